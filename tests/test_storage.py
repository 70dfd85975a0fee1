"""ObjectStore against a real SeaweedFS S3 server that enforces credentials."""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from flows.storage import (
    ObjectInfo,
    ObjectMissing,
    ObjectStore,
    ObjectTooLarge,
    StorageAccessDenied,
    StorageUnavailable,
)


@pytest.fixture(scope="module")
def store(s3_server) -> ObjectStore:
    return ObjectStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key)


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    assert store.ensure_bucket(name) is True
    return name


def test_ensure_bucket_is_idempotent(store, bucket):
    assert store.ensure_bucket(bucket) is False
    assert bucket in store.list_buckets()


def test_bytes_round_trip_and_stat(store, bucket):
    etag = store.put_bytes(bucket, "docs/a.bin", b"hello world", content_type="text/plain")
    assert store.read_bytes(bucket, "docs/a.bin", max_bytes=1024) == b"hello world"
    info = store.stat(bucket, "docs/a.bin")
    assert (info.key, info.size, info.etag) == ("docs/a.bin", 11, etag)
    assert info.last_modified is not None
    assert store.exists(bucket, "docs/a.bin") and not store.exists(bucket, "docs/b.bin")
    with store.open_stream(bucket, "docs/a.bin", max_bytes=11) as stream:
        assert stream.read(5) == b"hello"
        assert stream.read() == b" world"


def test_20_megabyte_object_goes_multipart(store, bucket, tmp_path):
    data = os.urandom(20 * 1024 * 1024)
    etag = store.put_bytes(bucket, "big/object.bin", data)
    assert "-" in etag  # an S3 multipart ETag is "<md5 of part md5s>-<part count>"
    got = store.read_bytes(bucket, "big/object.bin", max_bytes=len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # and through a file, both ways
    store.get_file(bucket, "big/object.bin", tmp_path / "copy.bin")
    assert (tmp_path / "copy.bin").read_bytes() == data


def test_prefix_listing_of_a_thousand_objects(store, bucket):
    keys = [f"inbox/batch/{i:04d}.txt" for i in range(1000)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: store.put_bytes(bucket, k, k.encode()), keys))
    store.put_bytes(bucket, "elsewhere/x.txt", b"x")

    listing = store.list_objects(bucket, "inbox/")
    assert not isinstance(listing, list)  # lazy: pages are fetched as the caller iterates
    objects = list(listing)
    assert sorted(o.key for o in objects) == keys  # more than one 1,000-key page is not needed
    assert all(isinstance(o, ObjectInfo) and o.size == len(o.key) and o.etag for o in objects)
    assert [o.key for o in store.list_objects(bucket, "elsewhere/")] == ["elsewhere/x.txt"]
    # non-recursive listing shows only the objects directly under the prefix
    assert list(store.list_objects(bucket, "inbox/", recursive=False)) == []


def test_json_round_trip(store, bucket):
    value = {"name": "Ünïcode ✓", "numbers": [1, 2.5, None], "nested": {"ok": True}}
    store.put_json(bucket, "cache/ocr.json", value)
    assert store.get_json(bucket, "cache/ocr.json") == value


def test_folder_upload_and_download(store, bucket, tmp_path):
    source = tmp_path / "model"
    (source / "tokenizer").mkdir(parents=True)
    (source / "config.json").write_text('{"d_model": 64}')
    (source / "model.safetensors").write_bytes(os.urandom(300_000))
    (source / "tokenizer" / "tokenizer.json").write_text("{}")

    keys = store.upload_folder(source, bucket, "models/v3/")
    assert sorted(keys) == [
        "models/v3/config.json",
        "models/v3/model.safetensors",
        "models/v3/tokenizer/tokenizer.json",
    ]
    target = tmp_path / "download"
    paths = store.download_folder(bucket, "models/v3", target)
    assert len(paths) == 3
    for path in source.rglob("*"):
        if path.is_file():
            assert (target / path.relative_to(source)).read_bytes() == path.read_bytes()
    # "models/v3" must not also match "models/v30"
    store.put_bytes(bucket, "models/v30/config.json", b"{}")
    assert len(store.download_folder(bucket, "models/v3", tmp_path / "again")) == 3


def test_presigned_get_is_fetchable_without_credentials(store, bucket):
    store.put_bytes(bucket, "share/page.png", b"\x89PNG fake")
    url = store.presigned_get(bucket, "share/page.png", expires=300)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"\x89PNG fake"


def test_size_limit_refuses_before_reading(store, bucket):
    store.put_bytes(bucket, "large.bin", b"x" * 1000)
    with pytest.raises(ObjectTooLarge) as info:
        store.read_bytes(bucket, "large.bin", max_bytes=999)
    assert (info.value.size, info.value.max_bytes) == (1000, 999)
    with pytest.raises(ObjectTooLarge), store.open_stream(bucket, "large.bin", max_bytes=10):
        pytest.fail("the stream must not open")
    assert store.read_bytes(bucket, "large.bin", max_bytes=1000) == b"x" * 1000


def test_missing_object_and_bucket(store, bucket):
    with pytest.raises(ObjectMissing) as info:
        store.read_bytes(bucket, "nope.bin", max_bytes=10)
    assert (info.value.bucket, info.value.key) == (bucket, "nope.bin")
    with pytest.raises(ObjectMissing):
        store.get_json(bucket, "nope.json")
    with pytest.raises(ObjectMissing):
        store.stat(f"absent-{uuid.uuid4().hex[:8]}", "x")
    with pytest.raises(ObjectMissing):
        list(store.list_objects(f"absent-{uuid.uuid4().hex[:8]}"))


def test_anonymous_access_is_refused(s3_server, store, bucket):
    store.put_bytes(bucket, "private.txt", b"secret data")
    url = f"http://{s3_server.endpoint}/{bucket}/private.txt"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 403


def test_wrong_secret_is_refused_and_never_shown(s3_server, bucket):
    wrong = "wrong-secret-" + uuid.uuid4().hex
    bad = ObjectStore(s3_server.endpoint, s3_server.access_key, wrong)
    with pytest.raises(StorageAccessDenied) as info:
        bad.read_bytes(bucket, "anything", max_bytes=10)
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert wrong not in repr(bad) and s3_server.secret_key not in repr(bad)


def test_unreachable_server_is_transient(s3_server):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "never-shown-" + uuid.uuid4().hex
    down = ObjectStore(f"127.0.0.1:{port}", "key", secret, connect_timeout=1)
    with pytest.raises(StorageUnavailable) as info:
        down.ensure_bucket("some-bucket")
    assert secret not in str(info.value)
    assert not isinstance(info.value, (ObjectMissing, StorageAccessDenied))


def test_from_settings(docflow_env):
    store = ObjectStore.from_settings(docflow_env)
    store.ensure_bucket(docflow_env.inbox_bucket)
    store.put_bytes(docflow_env.inbox_bucket, "a.txt", b"a")
    assert [o.key for o in store.list_objects(docflow_env.inbox_bucket)] == ["a.txt"]
    assert docflow_env.s3_secret_key.get_secret_value() not in repr(store)
