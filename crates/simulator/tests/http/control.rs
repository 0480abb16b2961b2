//! The `/_sim` control routes: the audit over HTTP and the fault plan replaced at run time.

use simulator::{AuditReport, FaultKind, FaultPlan, FaultRule, PurpleFlea};

use crate::{client, loopback, must_send, BET};

#[tokio::test]
async fn faults_are_replaced_at_run_time_and_audit_is_served() {
    let server = PurpleFlea::start(loopback(), FaultPlan::none(10))
        .await
        .expect("start");
    let base = server.base_url();
    let http = client();
    let unavailable = serde_json::to_string(&FaultPlan {
        seed: 10,
        rules: vec![FaultRule::new("*", FaultKind::Unavailable, 1.0)],
    })
    .expect("json");
    // (method, path, key, body, status)
    #[rustfmt::skip]
    let steps: &[(&str, &str, Option<&str>, &str, u16)] = &[
        ("POST", "/casino/bet", Some("a"), BET, 201),
        ("GET", "/_sim/faults", None, "", 200),
        ("POST", "/_sim/faults", None, &unavailable, 200),
        ("POST", "/casino/bet", Some("b"), BET, 503),
        ("GET", "/wallet/balance", None, "", 503),
        // Control routes never get faults.
        ("GET", "/_sim/audit", None, "", 200),
        ("POST", "/_sim/faults", None, r#"{"rules":[{"kind":"unavailable","probability":2}]}"#, 400),
        ("POST", "/_sim/faults", None, r#"{"seed":"x"}"#, 400),
        ("POST", "/casino/bet", Some("c"), BET, 503),
        ("POST", "/_sim/faults", None, r#"{"seed":10,"rules":[]}"#, 200),
        ("POST", "/casino/bet", Some("b"), BET, 201),
    ];
    for (index, (method, path, key, body, status)) in steps.iter().enumerate() {
        let reply = must_send(&http, &base, method, path, *key, body).await;
        assert_eq!(
            reply.status, *status,
            "step {index}: {method} {path} -> {reply:?}"
        );
    }
    let plan = must_send(&http, &base, "GET", "/_sim/faults", None, "").await;
    assert_eq!(plan.body, serde_json::json!({"seed": 10, "rules": []}));
    assert_eq!(server.fault_plan(), FaultPlan::none(10));
    let audit: AuditReport = serde_json::from_value(
        must_send(&http, &base, "GET", "/_sim/audit", None, "")
            .await
            .body,
    )
    .expect("audit shape");
    assert_eq!(audit.service, "purple_flea");
    assert_eq!(
        (audit.total_keys, audit.total_executions, audit.duplicates),
        (2, 2, 0)
    );
    assert_eq!(audit.keys["a"].route, "POST /casino/bet");
    assert_eq!(audit, server.audit());
}

#[tokio::test]
async fn plans_load_from_toml_and_json_files() {
    let directory = std::env::temp_dir().join(format!("simulator-plan-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("directory");
    let toml_path = directory.join("plan.toml");
    let json_path = directory.join("plan.json");
    std::fs::write(&toml_path, "seed = 3\n[[rules]]\nroute = \"POST /casino/bet\"\nkind = \"hold_after_commit\"\nprobability = 0.5\nhold_ms = 100\n").expect("write");
    std::fs::write(&json_path, r#"{"seed":3,"rules":[{"route":"POST /casino/bet","kind":"hold_after_commit","probability":0.5,"hold_ms":100}]}"#).expect("write");
    let from_toml = FaultPlan::load(&toml_path).expect("toml");
    let from_json = FaultPlan::load(&json_path).expect("json");
    assert_eq!(from_toml, from_json);
    assert!(FaultPlan::load(&directory.join("missing.toml")).is_err());
    std::fs::remove_dir_all(&directory).expect("clean up");
}
