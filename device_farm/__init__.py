"""What a build costs: devices, SSH, leases and the measurement protocol."""
