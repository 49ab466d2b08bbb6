//! The servers people run, with their TLS keys in the HSM, as Debian ships them:
//! nginx 1.22 and Apache httpd 2.4 (mod_ssl) through libp11's OpenSSL engine
//! (`libengine-pkcs11-openssl` 0.4.12). Their master process (root) loads the key
//! and forks workers that run as `www-data` and make every handshake's
//! signature; the partition admits both (`ihsm partition allow`). curl checks
//! the chain and the body over many new connections, and every nginx worker
//! serves some of them. Then the same with the workers' user not admitted: the
//! module's refusal, printed on the worker's standard error, is in the server's
//! error log. Every server runs on a free loopback port in a temporary prefix
//! and is killed with its process group when the test ends, however it ends;
//! every wait has a limit and a deadline fails a test that hangs anyway.
//! `.ci/run` installs nginx, apache2 and curl.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use support::*;

const LIMIT: Duration = Duration::from_secs(120);
/// New connections per server and key.
const REQUESTS: usize = 50;
/// curl processes at once.
const CLIENTS: usize = 5;
const BODY: &str = "served with a key in ihsm\n";
/// The unprivileged user Debian's packaged servers run their workers as.
const WORKER_USER: &str = "www-data";

/// An HSM with an EC P-256 and an RSA-2048 key, their certificates from a test
/// CA, and the engine configuration.
struct Site {
    hsm: Hsm,
    _dir: tempfile::TempDir,
    ca: Ca,
    openssl: PathBuf,
    /// (label, certificate) per key.
    keys: Vec<(&'static str, PathBuf)>,
    /// The workers' user.
    uid: u32,
    gid: u32,
}

impl Site {
    fn new() -> Option<Self> {
        let Some((uid, gid)) = user_ids(WORKER_USER) else {
            cannot_run(&format!("there is no user {WORKER_USER} here"));
            return None;
        };
        let hsm = Hsm::start();
        keypair(&hsm, "EC:prime256v1", "web-ec", "41");
        keypair(&hsm, "rsa:2048", "web-rsa", "42");
        let dir = tempfile::tempdir().unwrap();
        let openssl = openssl_conf(dir.path(), &module());
        let ca = Ca::new(dir.path());
        let keys = ["web-ec", "web-rsa"]
            .into_iter()
            .map(|label| (label, ca.issue_for_token_key(&hsm, &openssl, "tok", label)))
            .collect();
        Some(Self {
            hsm,
            _dir: dir,
            ca,
            openssl,
            keys,
            uid,
            gid,
        })
    }

    /// `ihsm partition allow tok --uid UID` (or `revoke`) on the admin socket.
    fn principal(&self, verb: &str, uid: u32) -> String {
        ok(
            Command::new(ihsm_cli())
                .arg("--state")
                .arg(self.hsm.state())
                .args(["partition", verb, "tok", "--uid", &uid.to_string()]),
            LIMIT,
        )
    }

    fn show(&self) -> String {
        ok(
            Command::new(ihsm_cli())
                .arg("--state")
                .arg(self.hsm.state())
                .args(["partition", "show", "tok"]),
            LIMIT,
        )
    }
}

fn need_servers(test: &str, server: &str) -> bool {
    require_root(&format!(
        "{test} (a master as root, workers as {WORKER_USER})"
    )) && need_tools(test, &[server, "curl", "openssl", "pkcs11-tool"])
}

/// A server started for a test, with its logs.
struct Running {
    server: Server,
    prefix: tempfile::TempDir,
    port: u16,
    error_log: PathBuf,
    access_log: PathBuf,
}

impl Running {
    fn error_log(&self) -> String {
        let mut log = std::fs::read_to_string(&self.error_log).unwrap_or_default();
        log.push_str(
            &std::fs::read_to_string(self.prefix.path().join("stdout.log")).unwrap_or_default(),
        );
        log
    }

    /// The pids in the access log's first column, one line per request.
    fn serving_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// The server's worker processes: its first process's children.
    fn workers(&self) -> Vec<u32> {
        children(self.server.pid())
    }

    /// Waits until the first process has `n` children that all run as `uid`
    /// (a child just forked is root until it changes user), or fails.
    fn wait_for_workers(&mut self, n: usize, uid: u32) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let w = self.workers();
            if w.len() >= n && w.iter().all(|p| uid_of(*p) == Some(uid)) {
                return w;
            }
            if let Some(s) = self.server.exited() {
                panic!("{} exited ({s}):\n{}", self.server.name, self.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start {n} workers as uid {uid} in 30 s (has {w:?}):\n{}",
                self.server.name,
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A temporary prefix the workers can read (the logs are opened by the root
/// master before it forks).
fn prefix(name: &str) -> tempfile::TempDir {
    let p = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    let html = p.path().join("html");
    std::fs::create_dir(&html).unwrap();
    std::fs::write(html.join("index.html"), BODY).unwrap();
    open_up(&html.join("index.html"));
    open_up(&html);
    p
}

fn start_nginx(site: &Site, label: &str, cert: &Path) -> Running {
    let prefix = prefix("ihsm-nginx");
    let p = prefix.path();
    let port = free_port();
    let (error_log, access_log) = (p.join("error.log"), p.join("access.log"));
    let conf = p.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "user {WORKER_USER};\n\
             worker_processes 2;\n\
             error_log {error} info;\n\
             pid {dir}/nginx.pid;\n\
             env IHSM_STATE;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             log_format workers '$pid $ssl_protocol $status';\n\
             access_log {access} workers;\n\
             server {{\n\
             listen 127.0.0.1:{port} ssl reuseport;\n\
             ssl_protocols TLSv1.3;\n\
             ssl_certificate {cert};\n\
             ssl_certificate_key \"engine:pkcs11:{uri}\";\n\
             location / {{ root {dir}/html; }}\n\
             }}\n}}\n",
            error = error_log.display(),
            access = access_log.display(),
            dir = p.display(),
            cert = cert.display(),
            uri = key_uri("tok", label),
        ),
    )
    .unwrap();
    let mut cmd = with_hsm(&site.hsm, "nginx");
    cmd.arg("-p")
        .arg(p)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&error_log)
        .args(["-g", "daemon off;"])
        .env("OPENSSL_CONF", &site.openssl);
    let mut server = Server::start("nginx", &mut cmd, &p.join("stdout.log"));
    let log = || {
        std::fs::read_to_string(&error_log).unwrap_or_default()
            + &std::fs::read_to_string(p.join("stdout.log")).unwrap_or_default()
    };
    wait_for_port(port, Duration::from_secs(60), &mut server, log);
    Running {
        server,
        prefix,
        port,
        error_log,
        access_log,
    }
}

/// The Apache modules Debian ships, loaded by path. Two children, never
/// replaced while the test runs (`MaxSpareThreads` above what two children
/// have, so neither is stopped as spare).
const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

fn start_apache(site: &Site, label: &str, cert: &Path) -> Running {
    let prefix = prefix("ihsm-apache");
    let p = prefix.path();
    let port = free_port();
    let (error_log, access_log) = (p.join("error.log"), p.join("access.log"));
    let conf = p.join("httpd.conf");
    std::fs::write(
        &conf,
        format!(
            "ServerRoot {dir}\n\
             ServerName localhost\n\
             DefaultRuntimeDir {dir}\n\
             PidFile {dir}/httpd.pid\n\
             LoadModule mpm_event_module {APACHE_MODULES}/mod_mpm_event.so\n\
             LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so\n\
             LoadModule ssl_module {APACHE_MODULES}/mod_ssl.so\n\
             LoadModule dir_module {APACHE_MODULES}/mod_dir.so\n\
             DirectoryIndex index.html\n\
             User {WORKER_USER}\n\
             Group {WORKER_USER}\n\
             StartServers 2\n\
             ServerLimit 2\n\
             ThreadsPerChild 8\n\
             MinSpareThreads 2\n\
             MaxSpareThreads 64\n\
             MaxRequestWorkers 16\n\
             Listen 127.0.0.1:{port}\n\
             ErrorLog {error}\n\
             LogLevel info\n\
             LogFormat \"%P %{{SSL_PROTOCOL}}x %>s\" workers\n\
             CustomLog {access} workers\n\
             DocumentRoot {dir}/html\n\
             Mutex file:{dir}\n\
             SSLCryptoDevice pkcs11\n\
             SSLSessionCache none\n\
             <VirtualHost 127.0.0.1:{port}>\n\
             SSLEngine on\n\
             SSLProtocol -all +TLSv1.3\n\
             SSLCertificateFile {cert}\n\
             SSLCertificateKeyFile \"{uri}\"\n\
             </VirtualHost>\n",
            dir = p.display(),
            error = error_log.display(),
            access = access_log.display(),
            cert = cert.display(),
            uri = key_uri("tok", label),
        ),
    )
    .unwrap();
    let mut cmd = with_hsm(&site.hsm, "apache2");
    cmd.arg("-d")
        .arg(p)
        .arg("-f")
        .arg(&conf)
        .arg("-DFOREGROUND")
        .env("OPENSSL_CONF", &site.openssl);
    let mut server = Server::start("apache2", &mut cmd, &p.join("stdout.log"));
    let log = || {
        std::fs::read_to_string(&error_log).unwrap_or_default()
            + &std::fs::read_to_string(p.join("stdout.log")).unwrap_or_default()
    };
    wait_for_port(port, Duration::from_secs(60), &mut server, log);
    Running {
        server,
        prefix,
        port,
        error_log,
        access_log,
    }
}

/// `REQUESTS` GETs, each on a new connection (a curl process each), from
/// `CLIENTS` threads at once; every one must check the chain and get the body.
fn many_requests(ca: &Path, server: &Running) {
    let per = REQUESTS / CLIENTS;
    let results: Vec<Result<(String, String), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    (0..per)
                        .map(|_| https_get(ca, server.port))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), REQUESTS);
    for r in results {
        match r {
            Ok((code, body)) => {
                assert_eq!(code, "200", "{body}\n{}", server.error_log());
                assert_eq!(body, BODY);
            }
            Err(e) => panic!("{e}\n{}:\n{}", server.server.name, server.error_log()),
        }
    }
}

/// The error log's lines at `[error]` or worse.
fn errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            [
                "[error]", "[crit]", "[alert]", "[emerg]", ":error]", ":crit]", ":alert]",
                ":emerg]",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect()
}

/// Serves TLS 1.3 with each key from workers running as the workers' user: the
/// chain and the body checked over `REQUESTS` new connections, every request
/// served by a worker of that user (and, with `every_worker`, both workers
/// serving some).
fn serves_with_each_key(site: &Site, start: fn(&Site, &str, &Path) -> Running, every_worker: bool) {
    for (label, cert) in &site.keys {
        let mut s = start(site, label, cert);
        let workers = s.wait_for_workers(2, site.uid);
        for w in &workers {
            assert_eq!(gid_of(*w), Some(site.gid), "{label}: worker {w}'s group");
        }
        many_requests(&site.ca.pem(), &s);
        // The chain is checked: another CA's certificate is refused.
        let other = tempfile::tempdir().unwrap();
        let other = Ca::new(other.path());
        let refused = https_get(&other.pem(), s.port).unwrap_err();
        assert!(refused.contains("certificate"), "{refused}");

        // The access log lines are written when a request ends.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pids = s.serving_pids();
        while pids.len() < REQUESTS && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            pids = s.serving_pids();
        }
        assert_eq!(pids.len(), REQUESTS, "{label}: {pids:?}");
        let serving: BTreeSet<u32> = pids.into_iter().collect();
        let now = s.workers();
        assert!(
            serving.iter().all(|p| now.contains(p)),
            "{label}: requests served by {serving:?}, the workers are {now:?}"
        );
        if every_worker {
            assert_eq!(
                serving.len(),
                2,
                "{label}: only {serving:?} of the workers {workers:?} served"
            );
        }
        let log = std::fs::read_to_string(s.access_log.clone()).unwrap();
        assert!(log.lines().all(|l| l.contains("TLSv1.3 200")), "{log}");
        let log = s.error_log();
        assert!(errors(&log).is_empty(), "{label}: {:?}", errors(&log));
    }
}

/// The workers' user is not admitted: no handshake succeeds, none hangs past
/// curl's limit, and the server's error log names the refusal.
fn refuses_the_workers_and_says_so(site: &Site, start: fn(&Site, &str, &Path) -> Running) {
    let (label, cert) = &site.keys[0];
    let mut s = start(site, label, cert);
    let workers = s.wait_for_workers(2, site.uid);
    for _ in 0..3 {
        let o = run(
            Command::new("curl")
                .args(["--silent", "--show-error", "--max-time", "5"])
                .arg("--cacert")
                .arg(site.ca.pem())
                .args([
                    "--resolve",
                    &format!("localhost:{}:127.0.0.1", s.port),
                    &format!("https://localhost:{}/", s.port),
                ]),
            Duration::from_secs(30),
        );
        assert!(!o.status.success(), "served anyway: {}", text(&o));
    }
    // The refusal: the partition, the caller, who it admits and the command that
    // would admit the caller.
    let admit = format!("ihsm partition allow tok --uid {}", site.uid);
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = s.error_log();
        if log.contains(&admit) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line = log
        .lines()
        .find(|l| l.contains(&admit))
        .unwrap_or_else(|| panic!("the error log does not name the refusal ({admit}):\n{log}"));
    println!("{}'s error log: {line}", s.server.name);
    for want in [
        "tok",
        &format!("uid {}", site.uid),
        &format!("gid {}", site.gid),
    ] {
        assert!(line.contains(want), "{want:?} missing from: {line}");
    }
    // Once per worker process at most, not once per attempt.
    assert!(
        log.matches(&admit).count() <= workers.len(),
        "said more than once per worker:\n{log}"
    );
}

#[test]
fn nginx_serves_tls13_from_www_data_workers_with_keys_in_the_hsm() {
    let _deadline = Deadline::new("nginx", Duration::from_secs(900));
    if !need_servers("the nginx test", "nginx") {
        return;
    }
    let Some(site) = Site::new() else { return };
    let said = site.principal("allow", site.uid);
    assert!(
        said.contains(&format!("now admits uid {}", site.uid)),
        "{said}"
    );
    let shown = site.show();
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("admits")
                && l.contains(&format!("uid {}", site.uid))),
        "ihsm partition show does not list uid {}:\n{shown}",
        site.uid
    );
    serves_with_each_key(&site, start_nginx, true);
}

#[test]
fn nginx_workers_not_admitted_are_refused_and_the_error_log_says_why() {
    let _deadline = Deadline::new("nginx refused", Duration::from_secs(600));
    if !need_servers("the nginx refusal test", "nginx") {
        return;
    }
    let Some(site) = Site::new() else { return };
    refuses_the_workers_and_says_so(&site, start_nginx);
    // Admitted, then revoked: refused again.
    site.principal("allow", site.uid);
    let (label, cert) = &site.keys[0];
    let s = start_nginx(&site, label, cert);
    assert!(
        https_get(&site.ca.pem(), s.port).is_ok(),
        "{}",
        s.error_log()
    );
    drop(s);
    site.principal("revoke", site.uid);
    refuses_the_workers_and_says_so(&site, start_nginx);
}

#[test]
fn apache_serves_tls13_from_www_data_children_with_keys_in_the_hsm() {
    let _deadline = Deadline::new("apache", Duration::from_secs(900));
    if !need_servers("the Apache test", "apache2") {
        return;
    }
    let Some(site) = Site::new() else { return };
    site.principal("allow", site.uid);
    // mpm_event's children share one listening socket: which child accepts a
    // connection is the kernel's choice, so not every child need serve.
    serves_with_each_key(&site, start_apache, false);
}

#[test]
fn apache_children_not_admitted_are_refused_and_the_error_log_says_why() {
    let _deadline = Deadline::new("apache refused", Duration::from_secs(600));
    if !need_servers("the Apache refusal test", "apache2") {
        return;
    }
    let Some(site) = Site::new() else { return };
    refuses_the_workers_and_says_so(&site, start_apache);
}
