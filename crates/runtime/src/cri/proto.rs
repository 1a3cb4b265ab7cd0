//! The CRI v1 messages (`runtime.v1`) and the RuntimeService and ImageService clients a
//! kubelet drives, generated at build time from `proto/cri.proto` (by `build.rs`, with protox
//! and tonic-prost-build: no protoc needed).

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/runtime.v1.rs"));

#[cfg(test)]
use std::collections::HashMap;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn sandbox_config() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "0b8c".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_0b8c".into(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: vec![PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "0.0.0.0".into(),
            }],
            labels: HashMap::from([("app".into(), "web".into())]),
            annotations: HashMap::from([("note".into(), "x".into())]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/besteffort".into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        target_id: String::new(),
                    }),
                    run_as_user: Some(Int64Value { value: 1000 }),
                    run_as_group: Some(Int64Value { value: 0 }),
                    supplemental_groups: vec![5, 6],
                    seccomp: Some(SecurityProfile {
                        profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
            }),
        }
    }

    fn container_config() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "nginx".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: "docker.io/library/nginx:1".into(),
                user_specified_image: "nginx:1".into(),
                ..Default::default()
            }),
            command: vec!["nginx".into()],
            args: vec!["-g".into(), "daemon off;".into()],
            working_dir: "/".into(),
            envs: vec![KeyValue {
                key: "PATH".into(),
                value: b"/usr/bin".to_vec(),
            }],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/data".into(),
                readonly: true,
                propagation: MountPropagation::PropagationHostToContainer as i32,
                ..Default::default()
            }],
            log_path: "nginx/0.log".into(),
            tty: true,
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 64 << 20,
                    oom_score_adj: -997,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["NET_ADMIN".into()],
                        drop_capabilities: vec!["ALL".into()],
                        add_ambient_capabilities: Vec::new(),
                    }),
                    run_as_group: Some(Int64Value { value: 101 }),
                    no_new_privs: true,
                    masked_paths: vec!["/proc/kcore".into()],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_config_round_trips() {
        let config = sandbox_config();
        let bytes = config.encode_to_vec();
        // Field 1 (metadata), length-delimited: key (1 << 3) | 2.
        assert_eq!(bytes[0], 0x0a);
        assert_eq!(PodSandboxConfig::decode(bytes.as_slice()).unwrap(), config);

        // Only the hostname: field 2, length-delimited, then its length and bytes.
        let hostname = PodSandboxConfig {
            hostname: "h".into(),
            ..Default::default()
        };
        assert_eq!(hostname.encode_to_vec(), [0x12, 0x01, b'h']);

        // An enum field reads back through prost's typed getter.
        let decoded = PodSandboxConfig::decode(bytes.as_slice()).unwrap();
        let ns = decoded
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network(), NamespaceMode::Node);
        assert_eq!(ns.pid(), NamespaceMode::Container);
    }

    #[test]
    fn container_config_round_trips() {
        let config = container_config();
        let bytes = config.encode_to_vec();
        assert_eq!(ContainerConfig::decode(bytes.as_slice()).unwrap(), config);

        // tty is field 14 (varint): key 14 << 3 = 0x70; linux is field 15: key 0x7a.
        let tty = ContainerConfig {
            tty: true,
            ..Default::default()
        };
        assert_eq!(tty.encode_to_vec(), [0x70, 0x01]);
        let linux = ContainerConfig {
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        assert_eq!(linux.encode_to_vec(), [0x7a, 0x00]);

        // run_as_group is field 12 of the security context; its value is field 1 of Int64Value.
        let ctx = LinuxContainerSecurityContext {
            run_as_group: Some(Int64Value { value: 7 }),
            ..Default::default()
        };
        assert_eq!(ctx.encode_to_vec(), [0x62, 0x02, 0x08, 0x07]);
    }

    #[test]
    fn requests_encode_as_cri_expects() {
        let stop = StopContainerRequest {
            container_id: "c".into(),
            timeout: 10,
        };
        assert_eq!(stop.encode_to_vec(), [0x0a, 0x01, b'c', 0x10, 0x0a]);

        // Extended ImageSpec fields sit at high tag numbers: 18 << 3 | 2 = 0x92 0x01.
        let spec = ImageSpec {
            user_specified_image: "a".into(),
            ..Default::default()
        };
        assert_eq!(spec.encode_to_vec(), [0x92, 0x01, 0x01, b'a']);

        let status = ContainerStatusResponse {
            status: Some(ContainerStatus {
                id: "c".into(),
                state: ContainerState::ContainerExited as i32,
                exit_code: -1,
                ..Default::default()
            }),
            info: HashMap::from([("info".into(), "{}".into())]),
        };
        let decoded = ContainerStatusResponse::decode(status.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, status);
        assert_eq!(
            decoded.status.unwrap().state(),
            ContainerState::ContainerExited
        );
    }
}
