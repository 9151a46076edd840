"""Mail: templates to bodies, MIME and wire form, the pooled SMTP client."""
