"""S3 object store: MinIO when a `minio` binary is on PATH, else `rclone serve s3`."""
