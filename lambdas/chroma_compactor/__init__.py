"""Keep ChromaDB collections in step with a DynamoDB table through versioned S3 snapshots."""
