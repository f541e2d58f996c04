DROP TABLE plugin_sync_leases;
