"""HTTP plumbing the features share: context, errors, auth, roles, OpenAPI, health."""
