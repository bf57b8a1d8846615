"""Site-wide helpers with no app of their own: time-zone names, form errors, the id path converter,
the API's plumbing (parser, pagination, schema hook) and the error types the API handler maps.

Everything here sits below accounts and orders: it imports neither."""
