//! Issue 21 item 1: a change to one tenant touches only that tenant. Structural checks: the other
//! tenants' cached values are the very same objects after the change (not re-read, not
//! re-parsed), and a tenant whose stored settings no longer parse does not stop another tenant
//! from being created, changed or deleted (a reload of every tenant would trip over it).

mod support;

use callbridge_server::state::Tenant;
use serde_json::json;
use std::sync::Arc;

const ADMIN: &str = "tenant-changes-admin-token-9c2d";
const KEY: &str = "changes-key";
const SALT: &str = "changes-salt-0000000000000000000";

async fn cached(running: &callbridge_server::Running, id: &str) -> Option<Arc<Tenant>> {
    running.state.tenant(id).await
}

#[tokio::test]
async fn creating_changing_and_deleting_a_tenant_leaves_the_others_untouched() {
    let (running, dir) = support::start_acme("tenant-changes", ADMIN, KEY, SALT).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let acme = cached(&running, "acme")
        .await
        .expect("acme loaded at start");

    // Break acme's stored settings behind the service's back: only a reload of acme would
    // parse them again.
    let mut broken = acme.row.clone();
    broken.settings_toml = "plan = \"no such plan\"\n".into();
    running.state.store.upsert_tenant(&broken).await.unwrap();

    let put = |id: &str, body: serde_json::Value| {
        http.put(format!("{base}/api/v1/tenants/{id}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    for n in 0..3 {
        let r = put(
            &format!("shop{n}"),
            json!({"mango_api_key": format!("key-shop{n}"), "mango_api_salt": format!("salt-shop{n}-00000000000000000000000")}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let shop = cached(&running, &format!("shop{n}")).await.expect("cached");
        assert_eq!(shop.row.mango_api_key, format!("key-shop{n}"));
    }
    let shop0 = cached(&running, "shop0").await.unwrap();
    let shop1 = cached(&running, "shop1").await.unwrap();

    // A change of shop1 replaces shop1 only.
    let r = put("shop1", json!({"settings_toml": "plan = \"extended\"\n"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let shop1_after = cached(&running, "shop1").await.unwrap();
    assert!(!Arc::ptr_eq(&shop1, &shop1_after), "shop1 was not reloaded");
    assert_eq!(shop1_after.row.settings_toml, "plan = \"extended\"\n");
    assert!(Arc::ptr_eq(
        &shop0,
        &cached(&running, "shop0").await.unwrap()
    ));

    // Deleting shop2 removes shop2 only.
    let r = http
        .delete(format!("{base}/api/v1/tenants/shop2"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(cached(&running, "shop2").await.is_none());

    // acme was never re-read: the cache still holds the object loaded at start, with the
    // settings that parsed then.
    let acme_after = cached(&running, "acme").await.unwrap();
    assert!(Arc::ptr_eq(&acme, &acme_after));
    assert!(Arc::ptr_eq(
        &shop0,
        &cached(&running, "shop0").await.unwrap()
    ));
    assert_eq!(running.state.tenants.read().await.len(), 3);

    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
