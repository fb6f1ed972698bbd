//! The blob client PD on the host runtime.
host_runtime::client_main!(blob_api::run);
