//! Every file in `dialplans/examples/` must validate: they are what admins copy.

use dialplans::Dialplans;

/// The example directory loads without errors and holds the lab company.
#[test]
fn examples_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let plans = match Dialplans::load_dir(dir) {
        Ok(p) => p,
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("examples do not validate:\n{}", text.join("\n"));
        }
    };
    let files = std::fs::read_dir(dir)
        .expect("examples dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        })
        .count();
    assert_eq!(plans.len(), files, "one tenant per example file");
    assert!(plans.get("acme").is_some());
}
