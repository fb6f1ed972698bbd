//! The update manager on the host runtime.
use update_manager::{Manager, SharedObjectPlacer};

fn main() {
    host_runtime::run(|pd| match Manager::new(pd, SharedObjectPlacer) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("update_manager: {e}");
            std::process::exit(1);
        }
    })
}
