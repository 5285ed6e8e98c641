"""Where bytes live: the content-addressed artifact store, shared blobs, hashing."""
