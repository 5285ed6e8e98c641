"""HTTP API v1: thin views over the service layer, OpenAPI from the marshmallow schemas."""
