//! High availability: the etcd member a server supervises (`--cluster-init`), joining another
//! server's cluster (`--join`), the server token that joining presents, and removing a server.

pub mod etcd_member;
pub mod join;
pub mod token;
