//! Throughput search in the RFC 2544 sense: the highest offered rate at which the device loses no frame (NDR,
//! non-drop rate) and the highest at which it loses at most a small fraction (PDR, partial-drop rate, 0.5% by
//! default), both found in one search by bisection, in the manner of MLRsearch: every trial's result narrows
//! the interval of *both* goals, the first guess is the rate the device actually forwarded at the maximum
//! rate, and a goal whose lower bound is unknown widens its step downwards (doubling) until a trial passes.
//!
//! A goal is done when its interval `[passing, failing)` is narrower than `precision` (relative to the failing
//! rate), when the maximum rate passes, or when the minimum rate fails (the goal is then unmet). When the
//! generator falls more than 1% short of a trial's rate, the trial counts at the rate it achieved. The device is
//! reached through the [`Trial`] trait, so the search is tested against models with known drop points.

/// One trial's outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrialResult {
    /// Rate asked for, frames per second.
    pub target_pps: f64,
    /// Frames offered (sent, or refused by a full input queue: both count as offered).
    pub offered: u64,
    /// Distinct frames received.
    pub received: u64,
    /// Seconds the generator sent for.
    pub secs: f64,
}

impl TrialResult {
    /// Frames lost.
    pub fn lost(&self) -> u64 {
        self.offered.saturating_sub(self.received)
    }

    /// Lost over offered (0 when nothing was offered).
    pub fn loss_ratio(&self) -> f64 {
        if self.offered == 0 {
            0.0
        } else {
            self.lost() as f64 / self.offered as f64
        }
    }

    /// Offered frames per second actually achieved.
    pub fn offered_pps(&self) -> f64 {
        self.offered as f64 / self.secs.max(1e-9)
    }

    /// Received frames per second.
    pub fn received_pps(&self) -> f64 {
        self.received as f64 / self.secs.max(1e-9)
    }
}

/// Something that sends at a rate for a while and says what came back.
pub trait Trial {
    /// Runs one trial at `rate_pps` (`f64::INFINITY`: as fast as possible) for `secs` seconds.
    fn run(&mut self, rate_pps: f64, secs: f64) -> anyhow::Result<TrialResult>;
}

/// Search settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchConfig {
    /// Lowest rate tried, frames per second.
    pub min_pps: f64,
    /// Highest rate tried; `None`: the rate of a first trial as fast as possible.
    pub max_pps: Option<f64>,
    /// Seconds per trial.
    pub trial_secs: f64,
    /// A goal is done when its interval is narrower than this fraction of its upper end.
    pub precision: f64,
    /// Loss ratio the PDR allows.
    pub pdr_loss: f64,
    /// Trials at most.
    pub max_trials: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            min_pps: 1000.0,
            max_pps: None,
            trial_secs: 1.0,
            precision: 0.01,
            pdr_loss: 0.005,
            max_trials: 40,
        }
    }
}

/// What is known about one goal.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Goal {
    /// Loss ratio allowed.
    pub loss: f64,
    /// Highest rate that passed.
    pub lower: Option<f64>,
    /// Lowest rate that failed.
    pub upper: Option<f64>,
    /// Step below `upper` while no lower bound is known.
    step: f64,
    /// Done: the interval is narrow enough, or the goal is unmet at the minimum rate.
    pub done: bool,
}

impl Goal {
    fn new(loss: f64) -> Goal {
        Goal {
            loss,
            ..Goal::default()
        }
    }

    /// The result: the highest passing rate, or `None` when even the minimum failed.
    pub fn rate(&self) -> Option<f64> {
        self.lower
    }

    fn update(&mut self, rate: f64, loss: f64) {
        if loss <= self.loss {
            if self.lower.is_none_or(|l| rate > l) {
                self.lower = Some(rate);
            }
            if self.upper.is_some_and(|u| u <= rate) {
                // Not monotonic (noise): the failure below is forgotten, the newer pass wins.
                self.upper = None;
            }
        } else {
            if self.upper.is_none_or(|u| rate < u) {
                self.upper = Some(rate);
            }
            if self.lower.is_some_and(|l| l >= rate) {
                self.lower = None;
            }
        }
    }

    fn check_done(&mut self, cfg: &SearchConfig, max: f64) {
        self.done = match (self.lower, self.upper) {
            (Some(l), _) if l >= max => true,
            (Some(l), Some(u)) => u - l <= cfg.precision * u,
            (None, Some(u)) => u <= cfg.min_pps,
            _ => false,
        };
    }

    /// The next rate to try for this goal.
    fn next(&mut self, cfg: &SearchConfig, max: f64, guess: f64) -> f64 {
        match (self.lower, self.upper) {
            (Some(l), Some(u)) => (l + u) / 2.0,
            (None, Some(u)) => {
                if self.step == 0.0 {
                    // First guess: what the device forwarded when overloaded, a little below.
                    self.step = (2.0 * cfg.precision * u).max(u - guess * (1.0 - self.loss));
                } else {
                    self.step *= 2.0;
                }
                (u - self.step).max(cfg.min_pps)
            }
            (Some(_), None) | (None, None) => max,
        }
    }
}

/// The search's answer.
#[derive(Clone, Debug, Default)]
pub struct SearchResult {
    /// Maximum rate of the search (asked, or measured as fast as possible).
    pub max_pps: f64,
    /// Loss-free goal.
    pub ndr: Goal,
    /// Partial-drop goal.
    pub pdr: Goal,
    /// Every trial, in order.
    pub trials: Vec<TrialResult>,
}

/// One progress line: the trial and both goals' intervals after it.
pub fn progress_line(n: usize, t: &TrialResult, ndr: &Goal, pdr: &Goal) -> String {
    let iv = |g: &Goal| {
        let f = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{:.4}", v / 1e6));
        format!(
            "[{}, {}){}",
            f(g.lower),
            f(g.upper),
            if g.done { " done" } else { "" }
        )
    };
    let target = if t.target_pps.is_finite() {
        format!("{:.4} Mpps", t.target_pps / 1e6)
    } else {
        "max".to_string()
    };
    format!(
        "trial {n:>2}: target {target}, offered {:.4} Mpps, received {:.4} Mpps, loss {:.4}% ({} of {}) | NDR {} PDR({:.2}%) {}",
        t.offered_pps() / 1e6,
        t.received_pps() / 1e6,
        t.loss_ratio() * 100.0,
        t.lost(),
        t.offered,
        iv(ndr),
        pdr.loss * 100.0,
        iv(pdr)
    )
}

/// Searches NDR and PDR, calling `progress` with a line after every trial.
pub fn search(
    trial: &mut dyn Trial,
    cfg: &SearchConfig,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<SearchResult> {
    anyhow::ensure!(cfg.min_pps > 0.0, "the minimum rate must be positive");
    anyhow::ensure!(
        cfg.precision > 0.0 && cfg.precision < 1.0,
        "precision is a fraction between 0 and 1"
    );
    let mut res = SearchResult {
        ndr: Goal::new(0.0),
        pdr: Goal::new(cfg.pdr_loss),
        ..SearchResult::default()
    };
    // The first trial: at the maximum rate, or as fast as possible to find it.
    let first = trial.run(cfg.max_pps.unwrap_or(f64::INFINITY), cfg.trial_secs)?;
    let max = cfg.max_pps.unwrap_or_else(|| first.offered_pps());
    anyhow::ensure!(
        max > cfg.min_pps,
        "the maximum rate {max:.0} pps is not above the minimum {:.0}",
        cfg.min_pps
    );
    res.max_pps = max;
    let guess = first.received_pps().min(max);
    let mut record = |res: &mut SearchResult, t: TrialResult, rate: f64| {
        let loss = t.loss_ratio();
        res.ndr.update(rate, loss);
        res.pdr.update(rate, loss);
        res.ndr.check_done(cfg, max);
        res.pdr.check_done(cfg, max);
        res.trials.push(t);
        progress(&progress_line(res.trials.len(), &t, &res.ndr, &res.pdr));
    };
    record(&mut res, first, max);
    while res.trials.len() < cfg.max_trials && !(res.ndr.done && res.pdr.done) {
        // Narrow the goal that is not done, the PDR (higher) first.
        let rate = if !res.pdr.done {
            res.pdr.next(cfg, max, guess)
        } else {
            res.ndr.next(cfg, max, guess)
        };
        let t = trial.run(rate, cfg.trial_secs)?;
        // A generator that fell short of the rate (a busy machine) measured a lower load: that is the
        // load the result is about.
        let achieved = t.offered_pps();
        record(
            &mut res,
            t,
            if achieved < rate * 0.99 {
                achieved
            } else {
                rate
            },
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that forwards at most `capacity` frames per second and loses `extra` of the rest.
    struct Model {
        capacity: f64,
        extra: f64,
        trials: usize,
    }

    impl Trial for Model {
        fn run(&mut self, rate: f64, secs: f64) -> anyhow::Result<TrialResult> {
            self.trials += 1;
            let rate = if rate.is_finite() { rate } else { 10e6 };
            let offered = (rate * secs) as u64;
            let through = (rate.min(self.capacity) * secs) as u64;
            let received = (through as f64 * (1.0 - self.extra)).round() as u64;
            Ok(TrialResult {
                target_pps: rate,
                offered,
                received,
                secs,
            })
        }
    }

    fn run(capacity: f64, extra: f64, cfg: &SearchConfig) -> SearchResult {
        let mut m = Model {
            capacity,
            extra,
            trials: 0,
        };
        let mut lines = 0;
        let r = search(&mut m, cfg, |_| lines += 1).unwrap();
        assert_eq!(lines, m.trials, "one progress line per trial");
        assert_eq!(r.trials.len(), m.trials);
        r
    }

    #[test]
    fn converges_to_the_drop_points_of_a_capacity_limit() {
        let cfg = SearchConfig {
            min_pps: 10_000.0,
            precision: 0.005,
            ..SearchConfig::default()
        };
        let r = run(2.0e6, 0.0, &cfg);
        assert_eq!(r.max_pps, 10e6);
        let ndr = r.ndr.rate().unwrap();
        assert!(
            ndr <= 2.0e6 && ndr >= 2.0e6 * (1.0 - cfg.precision),
            "{ndr}"
        );
        // Loss at rate R above capacity C is 1 - C/R: the PDR is C / (1 - 0.5%).
        let pdr_true = 2.0e6 / (1.0 - cfg.pdr_loss);
        let pdr = r.pdr.rate().unwrap();
        assert!(
            pdr <= pdr_true && pdr >= pdr_true * (1.0 - cfg.precision),
            "{pdr}"
        );
        let (l, u) = (r.ndr.lower.unwrap(), r.ndr.upper.unwrap());
        assert!(u - l <= cfg.precision * u);
        assert!(r.trials.len() < 25, "{} trials", r.trials.len());
    }

    #[test]
    fn one_percent_loss_everywhere_has_no_ndr_nor_pdr_but_meets_a_two_percent_goal() {
        let cfg = SearchConfig {
            min_pps: 10_000.0,
            max_pps: Some(1e6),
            ..SearchConfig::default()
        };
        let r = run(f64::INFINITY, 0.01, &cfg);
        assert_eq!(r.ndr.rate(), None);
        assert_eq!(r.pdr.rate(), None);
        assert!(r.ndr.done && r.pdr.done);
        assert!(r.trials.iter().any(|t| t.target_pps == cfg.min_pps));
        let r = run(
            f64::INFINITY,
            0.01,
            &SearchConfig {
                pdr_loss: 0.02,
                ..cfg
            },
        );
        assert_eq!(r.pdr.rate(), Some(1e6));
        assert_eq!(r.ndr.rate(), None);
    }

    #[test]
    fn a_device_faster_than_the_maximum_passes_at_once() {
        let cfg = SearchConfig {
            max_pps: Some(1e6),
            ..SearchConfig::default()
        };
        let r = run(5e6, 0.0, &cfg);
        assert_eq!(r.trials.len(), 1);
        assert_eq!((r.ndr.rate(), r.pdr.rate()), (Some(1e6), Some(1e6)));
    }
}
