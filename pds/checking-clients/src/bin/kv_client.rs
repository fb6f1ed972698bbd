//! The client PD on the host runtime. It works from `init`, as a Microkit
//! PD may, and never returns to the event loop; halting, it waits to be
//! told to exit like every other PD.
host_runtime::client_main!(checking_clients::run);
