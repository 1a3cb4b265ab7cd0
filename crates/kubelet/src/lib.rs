//! The node agent. This first part is the hollow (simulated) node: it registers a Node with a
//! capacity, renews the node's Lease in kube-node-lease, and plays the pods bound to it:
//! Running and Ready with an IP from the node's pod range, or Succeeded after a while for pods
//! that run to completion. One process hosts many.

pub mod hollow;
