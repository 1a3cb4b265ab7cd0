//! The Service proxy's rules in a real kernel: a network namespace of the test's own, its
//! table read back with `nft`, and traffic through a ClusterIP to a listener behind it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;

use tug_network::proxy::{PortRules, Protocol, Proxy, ServiceRules};

/// Runs `f` on a thread inside a new network namespace (with loopback up).
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare (run as root)");
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip");
        assert!(up.success());
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

fn ruleset(table: &str) -> String {
    let out = Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .expect("nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn web(endpoints: &[&str], node_port: Option<u16>) -> ServiceRules {
    let eps: Vec<SocketAddrV4> = endpoints.iter().map(|e| e.parse().unwrap()).collect();
    ServiceRules {
        cluster_ip: Some("10.96.0.50".parse().unwrap()),
        ports: vec![PortRules {
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
            endpoints: eps.clone(),
            external_endpoints: eps,
            external_local: false,
            affinity_seconds: None,
        }],
    }
}

#[test]
fn rules_follow_changes_and_traffic_reaches_the_endpoint() {
    in_new_netns(|| {
        let node: Ipv4Addr = "10.77.0.1".parse().unwrap();
        let add = Command::new("ip")
            .args(["addr", "add", "10.77.0.1/32", "dev", "lo"])
            .status()
            .unwrap();
        assert!(add.success());
        let mut proxy = Proxy::new("tugtest", node).expect("install the proxy table");
        let empty = ruleset("tugtest");
        assert!(empty.contains("ip daddr vmap @cluster-ips"), "{empty}");
        assert!(
            empty.contains("meta mark & 0x00004000 == 0x00004000 masquerade"),
            "{empty}"
        );

        // A listener behind the Service, on this namespace's own address.
        let listener = std::net::TcpListener::bind("10.77.0.1:8080").unwrap();
        let n = proxy
            .apply([(
                "default/web".to_string(),
                Some(web(&["10.77.0.1:8080", "10.77.0.9:8080"], Some(30080))),
            )])
            .expect("apply");
        assert_eq!(n, 1);
        let rules = ruleset("tugtest");
        for want in [
            "10.96.0.50 : goto vip/default/web",
            "30080 : goto np/default/web/tcp/80",
            "numgen random mod 2 0 goto ep/default/web/tcp/80/10.77.0.1:8080",
            "dnat to 10.77.0.9:8080",
        ] {
            assert!(rules.contains(want), "missing {want:?} in\n{rules}");
        }
        // The same rules again cost nothing.
        assert_eq!(
            proxy
                .apply([(
                    "default/web".to_string(),
                    Some(web(&["10.77.0.1:8080", "10.77.0.9:8080"], Some(30080)))
                )])
                .unwrap(),
            0
        );

        // One endpoint left: every connection to the ClusterIP and the NodePort reaches it.
        proxy
            .apply([(
                "default/web".to_string(),
                Some(web(&["10.77.0.1:8080"], Some(30080))),
            )])
            .unwrap();
        let rules = ruleset("tugtest");
        assert!(!rules.contains("10.77.0.9"), "{rules}");
        // Route the Service range locally, as the agent does before any rule.
        let route = Command::new("ip")
            .args(["route", "add", "local", "10.96.0.0/12", "dev", "lo"])
            .status()
            .unwrap();
        assert!(route.success());
        for target in ["10.96.0.50:80", "10.77.0.1:30080"] {
            for _ in 0..5 {
                let c = std::net::TcpStream::connect(target).expect(target);
                let (s, _) = listener.accept().unwrap();
                assert_eq!(s.local_addr().unwrap().to_string(), "10.77.0.1:8080");
                drop(c);
            }
        }

        // Gone: its chains and elements go, the skeleton stays.
        proxy.apply([("default/web".to_string(), None)]).unwrap();
        let rules = ruleset("tugtest");
        assert!(!rules.contains("default/web"), "{rules}");
        assert!(rules.contains("chain services"), "{rules}");
        tug_network::proxy::remove("tugtest").unwrap();
        let gone = Command::new("nft")
            .args(["list", "table", "ip", "tugtest"])
            .output()
            .unwrap();
        assert!(!gone.status.success());
    });
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    in_new_netns(|| {
        let add = Command::new("ip")
            .args(["addr", "add", "10.78.0.1/32", "dev", "lo"])
            .status()
            .unwrap();
        assert!(add.success());
        let route = Command::new("ip")
            .args(["route", "add", "local", "10.96.0.0/12", "dev", "lo"])
            .status()
            .unwrap();
        assert!(route.success());
        let mut proxy = Proxy::new("tugaff", "10.78.0.1".parse().unwrap()).unwrap();
        let listeners: Vec<std::net::TcpListener> = [8080, 8081]
            .iter()
            .map(|p| {
                let l = std::net::TcpListener::bind(("10.78.0.1", *p)).unwrap();
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        let mut svc = web(&["10.78.0.1:8080", "10.78.0.1:8081"], None);
        svc.ports[0].affinity_seconds = Some(60);
        proxy
            .apply([("default/sticky".to_string(), Some(svc))])
            .unwrap();
        let rules = ruleset("tugaff");
        assert!(
            rules.contains("update @aff/default/sticky/tcp/80/10.78.0.1:8080"),
            "{rules}"
        );
        // Every connection from this address lands on the endpoint the first one got.
        let mut hits = [0u32; 2];
        for _ in 0..20 {
            let _c = std::net::TcpStream::connect("10.96.0.50:80").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
            for (i, l) in listeners.iter().enumerate() {
                while l.accept().is_ok() {
                    hits[i] += 1;
                }
            }
        }
        assert_eq!(hits.iter().sum::<u32>(), 20);
        assert!(
            hits.contains(&20),
            "a client moved between endpoints: {hits:?}"
        );
        // The client is remembered in its endpoint's set, with the set's timeout.
        let rules = ruleset("tugaff");
        let remembered = rules
            .split("set aff/")
            .skip(1)
            .filter(|set| set.split('}').next().is_some_and(|e| e.contains("expires")))
            .count();
        assert_eq!(remembered, 1, "{rules}");
        // Without affinity the sets go.
        proxy
            .apply([(
                "default/sticky".to_string(),
                Some(web(&["10.78.0.1:8080", "10.78.0.1:8081"], None)),
            )])
            .unwrap();
        assert!(!ruleset("tugaff").contains("aff/"));
        tug_network::proxy::remove("tugaff").unwrap();
    });
}

#[test]
fn unanswered_connections_to_an_endpoint_that_left_are_forgotten() {
    in_new_netns(|| {
        let run = |args: &[&str]| {
            let ok = Command::new("ip").args(args).status().expect("ip");
            assert!(ok.success(), "ip {args:?}");
        };
        run(&["addr", "add", "10.79.0.1/32", "dev", "lo"]);
        run(&["route", "add", "local", "10.96.0.0/12", "dev", "lo"]);
        // A bridge with nobody behind it: connections to 10.79.1.9 are never answered.
        run(&["link", "add", "tugct0", "type", "bridge"]);
        run(&["link", "set", "tugct0", "up"]);
        run(&["addr", "add", "10.79.1.1/24", "dev", "tugct0"]);
        let mut proxy = Proxy::new("tugct", "10.79.0.1".parse().unwrap()).unwrap();
        let listener = std::net::TcpListener::bind("10.79.0.1:8080").unwrap();
        let dead: SocketAddrV4 = "10.79.1.9:8080".parse().unwrap();
        let alive: SocketAddrV4 = "10.79.0.1:8080".parse().unwrap();
        proxy
            .apply([(
                "default/web".to_string(),
                Some(web(&["10.79.1.9:8080"], None)),
            )])
            .unwrap();
        // A connection attempt to the dead endpoint, left hanging.
        let attempt = std::thread::spawn(|| {
            std::net::TcpStream::connect_timeout(
                &"10.96.0.50:80".parse().unwrap(),
                std::time::Duration::from_secs(3),
            )
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while tug_network::conntrack::unanswered_count(&[(6, dead)]).unwrap() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no conntrack entry to the dead endpoint"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // An answered connection to the endpoint that stays.
        proxy
            .apply([(
                "default/web".to_string(),
                Some(web(&["10.79.1.9:8080", "10.79.0.1:8080"], None)),
            )])
            .unwrap();
        // The dead endpoint leaves: its unanswered entry goes.
        proxy
            .apply([(
                "default/web".to_string(),
                Some(web(&["10.79.0.1:8080"], None)),
            )])
            .unwrap();
        assert_eq!(
            tug_network::conntrack::unanswered_count(&[(6, dead)]).unwrap(),
            0
        );
        let c = std::net::TcpStream::connect("10.96.0.50:80").unwrap();
        let _ = listener.accept().unwrap();
        assert_eq!(
            tug_network::conntrack::unanswered_count(&[(6, alive)]).unwrap(),
            0
        );
        drop(c);
        let _ = attempt.join();
        tug_network::proxy::remove("tugct").unwrap();
    });
}
