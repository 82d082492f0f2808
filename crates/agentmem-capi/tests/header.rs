//! include/agentmem.h must be what cbindgen generates from the sources.

use std::path::Path;

#[test]
fn header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include/agentmem.h");
    if std::env::var_os("AGENTMEM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/agentmem.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/agentmem.h is out of date with the sources: regenerate it with \
         `AGENTMEM_BLESS=1 cargo test --release -p agentmem-capi --test header` and commit it"
    );
}
