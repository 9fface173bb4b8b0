"""Data: the query record, the field's annotation formats, feature stores, synthetic videos, datasets."""
