//! The counter client PD on the host runtime.
host_runtime::client_main!(counter_api::run);
