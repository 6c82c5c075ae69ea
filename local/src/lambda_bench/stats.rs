//! Percentiles of one run, medians across runs, the budgets, and the Markdown table.

use std::time::Duration;

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of `samples`, which need not be sorted.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of `values` (the lower middle one for an even count).
pub fn median<T: Copy + Ord>(values: &[T]) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// The limits each function should stay under; a row fails at [`FAIL_FACTOR`] times one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    pub init: Duration,
    /// The handler's overhead: the function's own CPU time per warm invocation, p99.
    pub cpu_p99: Duration,
    /// Peak RSS (`VmHWM`) in KiB.
    pub rss_kib: u64,
}

pub const BUDGETS: Budgets = Budgets {
    init: Duration::from_millis(30),
    cpu_p99: Duration::from_millis(1),
    rss_kib: 24 * 1024,
};

/// Exceeding a budget by this factor fails the row (and the exit status); less is reported only.
pub const FAIL_FACTOR: f64 = 2.0;

/// What one run of one function measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFigures {
    pub figures: Figures,
    /// Invocations answered with an error or an answer of the wrong shape.
    pub errors: usize,
    pub invocations: usize,
    /// The first of those, described.
    pub first_error: Option<String>,
}

/// One table row: the medians over the runs that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub function: String,
    /// The medians over the runs that completed.
    pub figures: Option<Figures>,
    pub errors: usize,
    pub invocations: usize,
    /// Why a run could not complete, or the first wrong answer.
    pub problem: Option<String>,
    pub runs_failed: usize,
}

/// The figures of one run, or their medians over several.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub init: Duration,
    pub first: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// The function's own CPU time per warm invocation (all its threads).
    pub cpu_p50: Duration,
    pub cpu_p99: Duration,
    pub rss_kib: Option<u64>,
    /// Requests the function made to AWS, ServiceNow and Genesys per warm invocation, in hundredths
    /// (the Runtime API's two, `/next` and the answer, not counted).
    pub calls_centi: u64,
}

impl Row {
    /// Medians across `runs`; `failures`: why other runs did not complete.
    pub fn from_runs(function: &str, runs: &[RunFigures], failures: &[String]) -> Self {
        let pick = |f: fn(&Figures) -> Duration| -> Vec<Duration> {
            runs.iter().map(|r| f(&r.figures)).collect()
        };
        let figures = (|| {
            Some(Figures {
                init: median(&pick(|r| r.init))?,
                first: median(&pick(|r| r.first))?,
                p50: median(&pick(|r| r.p50))?,
                p99: median(&pick(|r| r.p99))?,
                cpu_p50: median(&pick(|r| r.cpu_p50))?,
                cpu_p99: median(&pick(|r| r.cpu_p99))?,
                rss_kib: median(
                    &runs
                        .iter()
                        .filter_map(|r| r.figures.rss_kib)
                        .collect::<Vec<_>>(),
                ),
                calls_centi: median(
                    &runs
                        .iter()
                        .map(|r| r.figures.calls_centi)
                        .collect::<Vec<_>>(),
                )?,
            })
        })();
        Self {
            function: function.to_string(),
            figures,
            errors: runs.iter().map(|r| r.errors).sum(),
            invocations: runs.iter().map(|r| r.invocations).sum(),
            problem: failures
                .first()
                .cloned()
                .or_else(|| runs.iter().find_map(|r| r.first_error.clone())),
            runs_failed: failures.len(),
        }
    }

    /// `ok`, `over budget: …` (reported, exit 0) or `FAILED: …`.
    pub fn verdict(&self, budgets: &Budgets) -> Verdict {
        let mut failed = Vec::new();
        let mut over = Vec::new();
        if self.runs_failed > 0 {
            failed.push(format!("{} run(s) did not complete", self.runs_failed));
        }
        if self.errors > 0 {
            failed.push(format!(
                "{}/{} invocations errored",
                self.errors, self.invocations
            ));
        }
        if let Some(m) = &self.figures {
            let ratios = [
                ("init", ratio(m.init, budgets.init)),
                ("CPU p99", ratio(m.cpu_p99, budgets.cpu_p99)),
                (
                    "RSS",
                    m.rss_kib.map_or(0.0, |r| r as f64 / budgets.rss_kib as f64),
                ),
            ];
            for (what, r) in ratios {
                let text = format!("{what} {r:.2}x budget");
                if r >= FAIL_FACTOR {
                    failed.push(text);
                } else if r > 1.0 {
                    over.push(text);
                }
            }
            if m.rss_kib.is_none() {
                failed.push("RSS not read".into());
            }
        }
        match (failed.is_empty(), over.is_empty()) {
            (false, _) => Verdict::Failed(failed.into_iter().chain(over).collect()),
            (true, false) => Verdict::Over(over),
            (true, true) => Verdict::Ok,
        }
    }
}

fn ratio(value: Duration, budget: Duration) -> f64 {
    value.as_secs_f64() / budget.as_secs_f64().max(f64::MIN_POSITIVE)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Over(Vec<String>),
    Failed(Vec<String>),
}

impl Verdict {
    pub fn failed(&self) -> bool {
        matches!(self, Verdict::Failed(_))
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Ok => f.write_str("ok"),
            Verdict::Over(why) => write!(f, "over budget: {}", why.join(", ")),
            Verdict::Failed(why) => write!(f, "FAILED: {}", why.join(", ")),
        }
    }
}

fn ms(d: Duration, decimals: usize) -> String {
    format!("{:.*}", decimals, d.as_secs_f64() * 1000.0)
}

const HEADER: &str = "| function | init ms | first ms | p50 ms | p99 ms | CPU p50 ms | CPU p99 ms | RSS MB | calls | status |\n";

/// The Markdown table: wall times (served → answered, the stub's answers included), the function's own
/// CPU time per warm invocation, which the handler budget applies to, and its calls per warm invocation.
pub fn markdown_table(rows: &[Row], budgets: &Budgets) -> String {
    let mut out =
        format!("{HEADER}| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for row in rows {
        let cells = match &row.figures {
            Some(m) => [
                ms(m.init, 1),
                ms(m.first, 2),
                ms(m.p50, 3),
                ms(m.p99, 3),
                ms(m.cpu_p50, 3),
                ms(m.cpu_p99, 3),
                m.rss_kib
                    .map_or("—".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                format!("{:.1}", m.calls_centi as f64 / 100.0),
            ],
            None => std::array::from_fn(|_| "—".to_string()),
        };
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            row.function,
            cells.join(" | "),
            row.verdict(budgets)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=200).rev().map(us).collect();
        assert_eq!(percentile(&samples, 50.0), Some(us(100)));
        assert_eq!(percentile(&samples, 99.0), Some(us(198)));
        assert_eq!(percentile(&samples, 100.0), Some(us(200)));
        assert_eq!(percentile(&[us(7)], 99.0), Some(us(7)));
        let ten: Vec<Duration> = (1..=10).map(us).collect();
        assert_eq!(percentile(&ten, 99.0), Some(us(10)));
        assert_eq!(percentile(&ten, 50.0), Some(us(5)));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&ten, 0.0), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median::<u64>(&[]), None);
    }

    fn run(init_ms: u64, p99_us: u64, rss_kib: u64, errors: usize) -> RunFigures {
        RunFigures {
            figures: Figures {
                init: Duration::from_millis(init_ms),
                first: Duration::from_millis(2),
                p50: us(p99_us / 2),
                p99: us(p99_us + 300),
                cpu_p50: us(p99_us / 2),
                cpu_p99: us(p99_us),
                rss_kib: Some(rss_kib),
                calls_centi: 500,
            },
            errors,
            invocations: 201,
            first_error: (errors > 0).then(|| "HTTP 503".to_string()),
        }
    }

    #[test]
    fn rows_take_medians_and_judge_against_the_budgets() {
        let row = Row::from_runs(
            "f",
            &[
                run(10, 500, 9000, 0),
                run(12, 700, 9100, 0),
                run(50, 900, 9200, 0),
            ],
            &[],
        );
        let m = row.figures.unwrap();
        assert_eq!(
            (m.init, m.cpu_p99, m.p99, m.rss_kib),
            (Duration::from_millis(12), us(700), us(1000), Some(9100))
        );
        assert_eq!(row.verdict(&BUDGETS), Verdict::Ok);

        let over = Row::from_runs("f", &[run(40, 500, 9000, 0)], &[]);
        assert_eq!(
            over.verdict(&BUDGETS).to_string(),
            "over budget: init 1.33x budget"
        );
        let slow = Row::from_runs("f", &[run(10, 2500, 30_000, 0)], &[]);
        let v = slow.verdict(&BUDGETS);
        assert!(v.failed());
        assert_eq!(
            v.to_string(),
            "FAILED: CPU p99 2.50x budget, RSS 1.22x budget"
        );
        let erring = Row::from_runs("f", &[run(10, 500, 9000, 3)], &[]);
        assert_eq!(
            erring.verdict(&BUDGETS).to_string(),
            "FAILED: 3/201 invocations errored"
        );
        assert_eq!(erring.problem.as_deref(), Some("HTTP 503"));
        let broken = Row::from_runs("f", &[], &["exited before polling".to_string()]);
        assert!(broken.figures.is_none());
        assert!(broken.verdict(&BUDGETS).failed());
        let table = markdown_table(&[row, broken], &BUDGETS);
        assert!(table.starts_with(HEADER));
        assert!(
            table.contains("| f | 12.0 | 2.00 | 0.350 | 1.000 | 0.350 | 0.700 | 8.9 | 5.0 | ok |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| f | — | — | — | — | — | — | — | — | FAILED: 1 run(s) did not complete |"
            ),
            "{table}"
        );
    }
}
