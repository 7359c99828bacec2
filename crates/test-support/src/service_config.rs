//! A configuration file for a service started in process by a test or a benchmark.

use std::path::{Path, PathBuf};

/// One Mango account served by a test's service.
pub struct TestTenant<'a> {
    pub id: &'a str,
    pub mango_api_key: &'a str,
    /// At least 32 characters: the service refuses shorter salts.
    pub mango_api_salt: &'a str,
}

/// Empties (or creates) `dir` and writes `dir/callbridge.toml`: `admin_token`, a port the system
/// picks on 127.0.0.1, the data folder `dir/data`, no directory refresh, and `tenant`. Returns the
/// file's path, for `Config::load`.
pub fn one_tenant_config(dir: &Path, admin_token: &str, tenant: &TestTenant<'_>) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("creating the test folder {}: {e}", dir.display()));
    let file = dir.join("callbridge.toml");
    let text = format!(
        "admin_token = \"{admin_token}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         directory_refresh_seconds = 0\n\
         [[tenants]]\nid = \"{}\"\nmango_api_key = \"{}\"\nmango_api_salt = \"{}\"\n",
        dir.join("data").display(),
        tenant.id,
        tenant.mango_api_key,
        tenant.mango_api_salt,
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    file
}
