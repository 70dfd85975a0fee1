"""Training DocFormerv2: pre-training on the three self-supervised tasks (`pretrain`) and
fine-tuning key-value extraction as generation (`finetune`), with the data loading both share
(`data`). Each module reads top to bottom, nanoGPT style; the commands are
`docformer pretrain` and `docformer finetune`."""
