"""The plumbing every API view shares: the JSON parser, the paginator and the OpenAPI error hook."""
