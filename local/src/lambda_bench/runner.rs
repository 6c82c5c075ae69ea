//! Runs one release binary as Lambda would: a fresh process per run, its environment as in the template
//! (plus the variables Lambda sets), events through the Runtime API emulator, the AWS stub behind
//! `AWS_ENDPOINT_URL`. Then the command line and the whole bench.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Bytes;

use super::aws_stub::{AwsStub, StubConfig};
use super::runtime_api::{AnswerKind, Phase, RuntimeApi};
use super::scenarios::{excerpt, Function};
use super::stats::{markdown_table, percentile, Figures, Row, RunFigures, BUDGETS, FAIL_FACTOR};

/// Lambda's init phase is cut off at 10 s.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Each event's deadline (`Lambda-Runtime-Deadline-Ms`), and how long the bench waits for an answer.
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub bin_dir: PathBuf,
    /// Warm invocations per run (after the first).
    pub invocations: usize,
    pub runs: usize,
    pub functions: Vec<Function>,
    /// A CSV file for every warm invocation's wall and CPU time (where a p99 comes from).
    pub samples: Option<PathBuf>,
}

pub const USAGE: &str = "usage: lambda-bench [--bin-dir DIR] [--invocations N] [--runs R] [--samples FILE] [FUNCTION...]

Runs each function's release binary against a local Lambda Runtime API emulator and an in-process AWS /
ServiceNow / Genesys stub (loopback only) and prints a Markdown table: cold init (spawn -> first poll of
/next), first invocation, warm p50 / p99 over N invocations (wall: served -> answered) and the function's
own CPU time per warm invocation (p50 / p99, all its threads), median of R runs, peak RSS (VmHWM).

  --bin-dir DIR      where the binaries are (default: ${CARGO_TARGET_DIR:-target}/release)
  --invocations N    warm invocations per run (default 200)
  --runs R           fresh processes per function (default 3)
  --samples FILE     also write every warm invocation as CSV: function,run,invocation,wall_us,cpu_us
  FUNCTION           webhook-receiver servicenow-writer legacy-ingest token-refresher data-action
                     callback-api callback-api-read callback-events callback-notifier callback-websocket
                     callback-api-cancel callback-api-reschedule legacy-ingest-one-token
                     (default: all; callback-api-read, -cancel, -reschedule: its GET, DELETE and PATCH
                     /callbacks/{id}; legacy-ingest-one-token: one token for every request, as a client
                     that keeps it)

Exits 1 when a function errors or exceeds a budget (init 30 ms, CPU p99 1 ms, RSS 24 MB) by 2x.";

impl Options {
    /// Parses the arguments after the program name; `target_dir`: `CARGO_TARGET_DIR` if set.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        target_dir: Option<String>,
    ) -> Result<Self, String> {
        let mut options = Options {
            bin_dir: PathBuf::from(target_dir.unwrap_or_else(|| "target".into())).join("release"),
            invocations: 200,
            runs: 3,
            functions: Vec::new(),
            samples: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
            match arg.as_str() {
                "--bin-dir" => options.bin_dir = PathBuf::from(value("--bin-dir")?),
                "--invocations" => options.invocations = count(&value("--invocations")?)?,
                "--runs" => options.runs = count(&value("--runs")?)?,
                "--samples" => options.samples = Some(PathBuf::from(value("--samples")?)),
                "-h" | "--help" => return Err(USAGE.into()),
                name => match Function::parse(name) {
                    Some(f) if !options.functions.contains(&f) => options.functions.push(f),
                    Some(_) => {}
                    None => {
                        return Err(format!("unknown argument or function {name:?}\n\n{USAGE}"))
                    }
                },
            }
        }
        if options.functions.is_empty() {
            options.functions = Function::ALL.to_vec();
        }
        Ok(options)
    }
}

fn count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

/// The binary under test; killed (and reaped) when dropped.
struct Process(Child);

impl Process {
    fn exited(&mut self) -> Option<String> {
        match self.0.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Awaits `fut` unless the process exits or `timeout` passes first (`what` ends the message).
async fn unless_gone<T>(
    fut: impl Future<Output = T>,
    process: &mut Process,
    timeout: Duration,
    what: &str,
) -> Result<T, String> {
    tokio::pin!(fut);
    let give_up = Instant::now() + timeout;
    loop {
        tokio::select! {
            biased;
            v = &mut fut => return Ok(v),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                if let Some(status) = process.exited() {
                    return Err(format!("the process exited ({status}) {what}"));
                }
                if Instant::now() >= give_up {
                    return Err(format!("no progress within {} s {what}", timeout.as_secs()));
                }
            }
        }
    }
}

/// `VmHWM` (peak resident set) in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Time on CPU (ns) from the text of `/proc/<pid>/task/<tid>/schedstat` (its first field).
pub fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time of `pid`'s live threads so far (a thread that exits while they are read is left out); `None`
/// when no thread's could be read.
fn cpu_time(pid: u32) -> Option<Duration> {
    let times: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| parse_schedstat(&stat))
        .collect();
    (!times.is_empty()).then(|| Duration::from_nanos(times.iter().sum()))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    parse_vm_hwm(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// What Lambda's environment sets for a function (provided.al2023, 128 MB), with the emulator and the stub.
fn lambda_env(
    f: Function,
    runtime_api: &str,
    stub: &str,
    dir: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", format!("bench-{}", f.name())),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/bench-{}", f.name()),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]00000000000000000000000000000000".into(),
        ),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
        ("_HANDLER", "bootstrap".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "ASIABENCHBENCHBENCH0".into()),
        ("AWS_SECRET_ACCESS_KEY", "bench-secret-access-key".into()),
        ("AWS_SESSION_TOKEN", "bench-session-token".into()),
        ("AWS_ENDPOINT_URL", stub.to_string()),
        // Nothing from the host: an empty home (no ~/.aws profiles), never the instance metadata service.
        ("HOME", dir.display().to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("TZ", ":UTC".into()),
        ("LANG", "en_US.UTF-8".into()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
    ]
}

/// One run: a fresh process, one cold (first) invocation and `warm` more. `log`: its stdout and stderr.
pub async fn run_once(
    f: Function,
    binary: &Path,
    warm: usize,
    log: &Path,
) -> Result<(RunFigures, Vec<String>, Vec<(Duration, Duration)>), String> {
    // Made before the process starts: signing and serialising are not the function's time.
    let workload = f.workload(warm + 1)?;
    let events = workload.events;
    let stub = AwsStub::start(StubConfig {
        secrets: f.secrets(),
        max_message_size: 262_144,
        datatable_columns: f.datatable_columns(),
        items: workload.items,
        subscriber_secret: f.subscriber_secret(),
    })
    .await?;
    let api = RuntimeApi::start(f.arn(), INVOCATION_TIMEOUT).await?;
    let dir = log.parent().unwrap_or(Path::new("."));
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(lambda_env(f, &api.address(), &stub.url(), dir))
        .envs(f.env(&stub.url()))
        .current_dir(binary.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let spawned = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let pid = child.id();
    let mut process = Process(child);

    let phase = unless_gone(
        api.ready(),
        &mut process,
        INIT_TIMEOUT,
        "before asking for its first event",
    )
    .await?;
    let init = match phase {
        Phase::Polled(at) => at.saturating_duration_since(spawned),
        Phase::InitFailed { error_type, body } => {
            return Err(format!(
                "init error {error_type}: {}",
                excerpt(body.as_bytes())
            ))
        }
        Phase::Initialising => return Err("the emulator stopped".into()),
    };

    let mut latencies = Vec::with_capacity(events.len());
    // The function's own CPU per invocation: from its poll for the event to its poll for the next one
    // (handler, answer, runtime client), all its threads; the stub's and the emulator's time is not in it.
    let mut cpu = Vec::with_capacity(events.len());
    let (mut errors, mut first_error) = (0, None);
    // Each window starts where the last one ended: no CPU of the function falls between two.
    let mut before = cpu_time(pid);
    let mut requests_after_first = 0;
    for (i, event) in events.into_iter().enumerate() {
        let invocation = api.invoke(Bytes::from(event));
        let what = format!("before answering invocation {i}");
        let answer =
            unless_gone(invocation.answer(), &mut process, INVOCATION_TIMEOUT, &what).await??;
        latencies.push(answer.latency());
        let what = format!("before polling after invocation {i}");
        unless_gone(
            api.polled(i as u64 + 2),
            &mut process,
            INVOCATION_TIMEOUT,
            &what,
        )
        .await?;
        let after = cpu_time(pid);
        if let (Some(b), Some(a)) = (before, after) {
            cpu.push(a.saturating_sub(b));
        }
        before = after;
        if i == 0 {
            requests_after_first = stub.requests();
        }
        let wrong = match &answer.kind {
            AnswerKind::Response => f.check(&answer.body).err(),
            AnswerKind::Error { error_type } => {
                Some(format!("{error_type}: {}", excerpt(&answer.body)))
            }
        };
        if let Some(why) = wrong {
            errors += 1;
            first_error.get_or_insert(format!("invocation {i}: {why}"));
        }
    }
    let rss_kib = peak_rss_kib(pid);
    let warm_requests = stub.requests().saturating_sub(requests_after_first);
    drop(process);
    // A budget judged on nothing would pass: no CPU figure for every invocation fails the run.
    if cpu.len() != latencies.len() || cpu.iter().all(Duration::is_zero) {
        return Err(format!(
            "CPU time read for {} of {} invocations (is /proc/<pid>/task/*/schedstat readable and non-zero?)",
            cpu.iter().filter(|c| !c.is_zero()).count(),
            latencies.len()
        ));
    }
    // What the answers cannot show: the effects of the invocations (a moved reservation, a delivered webhook).
    if errors == 0 {
        let invocations = latencies.len();
        stub.with_items(|items| f.verify(&stub.observed(), items, invocations))
            .map_err(|e| format!("after {invocations} successful invocations, {e}"))?;
    }

    let first = latencies.first().copied().unwrap_or_default();
    let warm_latencies = latencies.get(1..).unwrap_or_default();
    let warm_cpu = cpu.get(1..).unwrap_or_default();
    let figures = RunFigures {
        figures: Figures {
            init,
            first,
            p50: percentile(warm_latencies, 50.0).unwrap_or_default(),
            p99: percentile(warm_latencies, 99.0).unwrap_or_default(),
            cpu_p50: percentile(warm_cpu, 50.0).unwrap_or_default(),
            cpu_p99: percentile(warm_cpu, 99.0).unwrap_or_default(),
            rss_kib,
            calls_centi: (warm_requests * 100)
                .checked_div(warm_latencies.len() as u64)
                .unwrap_or(0),
        },
        errors,
        invocations: latencies.len(),
        first_error,
    };
    let samples = warm_latencies
        .iter()
        .copied()
        .zip(warm_cpu.iter().copied())
        .collect();
    Ok((figures, stub.unexpected(), samples))
}

/// Where `f`'s binary should be, or the command that builds it.
pub fn binary(bin_dir: &Path, f: Function) -> Result<PathBuf, String> {
    let path = bin_dir.join(f.binary());
    // Absolute: the process starts in the binary's directory, as Lambda's in /var/task.
    match std::fs::canonicalize(&path) {
        Ok(absolute) if absolute.is_file() => Ok(absolute),
        _ => Err(format!(
            "{} not found: build it with `cargo build --release -p {}` (or pass --bin-dir)",
            path.display(),
            f.binary()
        )),
    }
}

const SAMPLES_HEADER: &str = "function,run,invocation,wall_us,cpu_us\n";

/// One run's warm invocations as `--samples` lines: (wall, CPU) each, numbered from 1.
fn sample_lines(function: &str, run: usize, warm: &[(Duration, Duration)]) -> String {
    warm.iter()
        .enumerate()
        .map(|(i, (wall, cpu))| {
            format!(
                "{function},{run},{},{},{}\n",
                i + 1,
                wall.as_micros(),
                cpu.as_micros()
            )
        })
        .collect()
}

/// The host's CPU model (`/proc/cpuinfo`): figures compare only within one host.
fn host_cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, name)| name.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// Runs the bench as the options say; prints progress and notes on stderr, the table on stdout. Returns
/// the exit status: 0, 1 when a row failed, 2 when a binary is missing.
pub async fn main_with(options: &Options) -> i32 {
    let mut binaries = Vec::new();
    let mut missing = Vec::new();
    for &f in &options.functions {
        match binary(&options.bin_dir, f) {
            Ok(path) => binaries.push((f, path)),
            Err(e) => missing.push(e),
        }
    }
    if !missing.is_empty() {
        for m in missing {
            eprintln!("lambda-bench: {m}");
        }
        return 2;
    }
    let logs = std::env::temp_dir().join(format!("lambda-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("lambda-bench: cannot create {}: {e}", logs.display());
        return 2;
    }

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut samples = String::from(SAMPLES_HEADER);
    for (f, path) in &binaries {
        let (mut runs, mut failures, mut unexpected) =
            (Vec::new(), Vec::new(), Vec::<String>::new());
        for run in 1..=options.runs {
            let log = logs.join(format!("{}-run{run}.log", f.name()));
            match run_once(*f, path, options.invocations, &log).await {
                Ok((run_figures, odd, warm)) => {
                    samples.push_str(&sample_lines(f.name(), run, &warm));
                    let figures = &run_figures.figures;
                    eprintln!(
                        "{} run {run}/{}: init {} ms, first {} ms, p50 {} ms, p99 {} ms, CPU p50 {} ms, CPU p99 {} ms, RSS {} KiB, {:.2} calls per warm invocation, {} error(s)",
                        f.name(),
                        options.runs,
                        ms(figures.init),
                        ms(figures.first),
                        ms(figures.p50),
                        ms(figures.p99),
                        ms(figures.cpu_p50),
                        ms(figures.cpu_p99),
                        figures.rss_kib.map_or("?".into(), |k| k.to_string()),
                        figures.calls_centi as f64 / 100.0,
                        run_figures.errors
                    );
                    for u in odd {
                        if !unexpected.contains(&u) {
                            unexpected.push(u);
                        }
                    }
                    runs.push(run_figures);
                }
                Err(e) => {
                    eprintln!("{} run {run}/{}: {e}", f.name(), options.runs);
                    failures.push(format!("run {run}: {e} (log: {})", log.display()));
                }
            }
        }
        let row = Row::from_runs(f.name(), &runs, &failures);
        if row.verdict(&BUDGETS).failed() {
            if let Some(problem) = &row.problem {
                notes.push(format!("{}: {problem}", f.name()));
            }
            notes.push(format!("{}: logs in {}", f.name(), logs.display()));
        }
        if !unexpected.is_empty() {
            notes.push(format!(
                "{}: requests the stub had no answer for: {}",
                f.name(),
                unexpected.join(", ")
            ));
        }
        rows.push(row);
    }

    let failed = rows.iter().any(|r| r.verdict(&BUDGETS).failed());
    println!(
        "Release binaries on this host ({}), each against a local Lambda Runtime API and an in-process AWS / \
         ServiceNow / Genesys stub: {} warm invocations per run, median of {} run(s). Budgets: init < {} ms, \
         handler overhead (the function's own CPU per warm invocation, p99) < {} ms, RSS < {} MB ({}x fails). \
         Wall times include the stub's answers and the wake-ups between the processes. Calls: requests to \
         AWS, ServiceNow and Genesys per warm invocation (the Runtime API's two are not counted).\n",
        host_cpu(),
        options.invocations,
        options.runs,
        BUDGETS.init.as_millis(),
        BUDGETS.cpu_p99.as_millis(),
        BUDGETS.rss_kib / 1024,
        FAIL_FACTOR
    );
    print!("{}", markdown_table(&rows, &BUDGETS));
    for n in &notes {
        eprintln!("note: {n}");
    }
    if !failed {
        let _ = std::fs::remove_dir_all(&logs);
    }
    if let Some(path) = &options.samples {
        if let Err(e) = std::fs::write(path, &samples) {
            eprintln!("lambda-bench: cannot write {}: {e}", path.display());
            return 2;
        }
    }
    i32::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line() {
        let o = Options::parse(args(&[]), None).unwrap();
        assert_eq!(o.bin_dir, PathBuf::from("target/release"));
        assert_eq!((o.invocations, o.runs), (200, 3));
        assert_eq!(o.functions, Function::ALL.to_vec());
        assert_eq!(o.samples, None);
        let o = Options::parse(
            args(&[
                "--bin-dir",
                "/b",
                "--invocations",
                "50",
                "--runs",
                "1",
                "--samples",
                "/s.csv",
                "servicenow-writer",
            ]),
            Some("/t".into()),
        )
        .unwrap();
        assert_eq!(o.samples, Some(PathBuf::from("/s.csv")));
        assert_eq!(o.bin_dir, PathBuf::from("/b"));
        assert_eq!((o.invocations, o.runs), (50, 1));
        assert_eq!(o.functions, vec![Function::ServiceNowWriter]);
        let o = Options::parse(args(&[]), Some("/t".into())).unwrap();
        assert_eq!(o.bin_dir, PathBuf::from("/t/release"));
        for bad in [&["--runs", "0"][..], &["--invocations"], &["nope"]] {
            assert!(Options::parse(args(bad), None).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn samples_are_one_csv_line_per_warm_invocation() {
        let warm = [
            (Duration::from_micros(1500), Duration::from_micros(900)),
            (Duration::from_micros(2100), Duration::from_micros(1250)),
        ];
        assert_eq!(
            format!(
                "{SAMPLES_HEADER}{}",
                sample_lines("servicenow-writer", 2, &warm)
            ),
            "function,run,invocation,wall_us,cpu_us\n\
             servicenow-writer,2,1,1500,900\n\
             servicenow-writer,2,2,2100,1250\n"
        );
        assert_eq!(sample_lines("x", 1, &[]), "");
    }

    #[test]
    fn peak_rss_from_proc_status() {
        let status =
            "Name:\tbootstrap\nVmPeak:\t  123456 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    9000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(9876));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss_kib(std::process::id()).is_some_and(|k| k > 0));
    }

    #[test]
    fn cpu_time_from_schedstat() {
        assert_eq!(parse_schedstat("131024 107671 2\n"), Some(131_024));
        assert_eq!(parse_schedstat(""), None);
        // A child that spins for 200 ms of CPU, and one that sleeps.
        let mut busy = Process(
            Command::new("sh")
                .args(["-c", "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"])
                .spawn()
                .unwrap(),
        );
        let mut idle = Process(Command::new("sleep").arg("30").spawn().unwrap());
        // However loaded the machine, the spinning child is charged 100 ms of CPU at some point.
        let give_up = Instant::now() + Duration::from_secs(20);
        let spun = loop {
            let spun = cpu_time(busy.0.id()).expect("schedstat");
            if spun >= Duration::from_millis(100) || Instant::now() > give_up {
                break spun;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let slept = cpu_time(idle.0.id()).expect("schedstat");
        assert!(spun >= Duration::from_millis(100), "{spun:?}");
        assert!(slept < Duration::from_millis(50), "{slept:?}");
        assert_eq!(cpu_time(u32::MAX), None, "no such process");
        assert!(busy.exited().is_none() && idle.exited().is_none());
    }

    #[tokio::test]
    async fn waiting_stops_when_the_process_exits_or_stalls() {
        let mut gone = Process(Command::new("true").spawn().unwrap());
        let e = unless_gone(
            std::future::pending::<()>(),
            &mut gone,
            INIT_TIMEOUT,
            "early",
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("the process exited"), "{e}");
        let mut stuck = Process(Command::new("sleep").arg("5").spawn().unwrap());
        let e = unless_gone(
            std::future::pending::<()>(),
            &mut stuck,
            Duration::from_millis(50),
            "stalled",
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("no progress"), "{e}");
        let done = unless_gone(async { 7 }, &mut stuck, INIT_TIMEOUT, "x").await;
        assert_eq!(done, Ok(7));
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let e = binary(Path::new("/nonexistent"), Function::DataAction).unwrap_err();
        assert!(e.contains("cargo build --release -p data-action"), "{e}");
        let dir = std::env::temp_dir().join(format!("lambda-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data-action"), b"").unwrap();
        let found = binary(&dir.join("."), Function::DataAction).unwrap();
        assert!(
            found.is_absolute() && found.ends_with("data-action"),
            "{found:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
