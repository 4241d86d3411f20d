"""PowerDNS: the tenant-zone backend."""
