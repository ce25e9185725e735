"""The rate-limit service: token buckets per user and upstream model, RPM and TPM."""
