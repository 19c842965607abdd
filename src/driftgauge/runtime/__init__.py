"""The running sidecar's housekeeping: state snapshots, logging, the allocator."""
