//! The domain shell on the host runtime.
use domain_shell::{host_loader::SharedObjectLoader, Shell};

fn main() {
    host_runtime::run(|pd| Shell::new(pd, SharedObjectLoader))
}
