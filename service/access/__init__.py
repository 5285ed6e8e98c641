"""Who may do what: tokens and their roles, quotas, and the audit trail's views."""
