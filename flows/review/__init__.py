"""The review application: people check the fields the model was unsure of (`docflow review`)."""
