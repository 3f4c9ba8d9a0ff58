//! The harness against a known truth: ring ports with a lossy, policing or delaying receive queue
//! ([`wharf_perf::impair`]). Loss accounting, the NDR/PDR search and latency percentiles must find what was
//! injected. No wall-clock speed is asserted: the rates here are far below what a ring moves.

use dataplane::port::ring::RingPort;
use dataplane::{Pool, PoolConfig, Port};
use std::time::Duration;
use wharf_perf::gen::{Clock, Generator, Profile, Proto, Sizes};
use wharf_perf::impair::{Impaired, Impairment};
use wharf_perf::latency::Summary;
use wharf_perf::search::{search, SearchConfig, Trial};
use wharf_perf::trial::PortTrial;

/// A ring pair whose receiving end is impaired: the generator sends on `a`, receives on `b`.
fn impaired_trial(
    imp: Impairment,
    profile: Profile,
) -> (PortTrial, std::sync::Arc<wharf_perf::impair::ImpairStats>) {
    let pool = Pool::new(&PoolConfig {
        buffers: 32768,
        hugepages: false,
        ..Default::default()
    })
    .unwrap();
    let (a, b) = RingPort::pair("a", "b", 1, 4096);
    let clock = Clock::new();
    let rx = Impaired::new(b.open_queue(0).unwrap(), imp, clock);
    let stats = rx.stats();
    let gen = Generator::new(profile, 32, clock).unwrap();
    let t = PortTrial::new(gen, a.open_queue(0).unwrap(), Box::new(rx), pool, clock);
    (t, stats)
}

/// The tests here busy-poll (generator, receiver, workers): one at a time, so that they do not take the
/// CPUs from each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn one_percent_drop_is_counted_and_fails_ndr_and_pdr() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let imp = Impairment {
        drop: 0.01,
        ..Impairment::default()
    };
    let profile = Profile {
        flows: 1000,
        sizes: Sizes::parse("imix").unwrap(),
        ..Profile::default()
    };
    let (mut t, stats) = impaired_trial(imp, profile);
    let r = t.run(400_000.0, 0.25).unwrap();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(r.offered > 10_000, "{r:?}");
    // Every frame is accounted for: what the port dropped is exactly what the receiver misses.
    assert_eq!(r.lost(), dropped, "{r:?}");
    let loss = r.loss_ratio();
    assert!((0.008..0.012).contains(&loss), "loss {loss}");
    let c = t.rx.counts();
    assert_eq!((c.duplicates, c.reordered, c.foreign), (0, 0, 0));

    let cfg = SearchConfig {
        min_pps: 50_000.0,
        max_pps: Some(400_000.0),
        trial_secs: 0.1,
        precision: 0.05,
        ..SearchConfig::default()
    };
    let res = search(&mut t, &cfg, |l| println!("{l}")).unwrap();
    assert_eq!(
        res.ndr.rate(),
        None,
        "a port that always loses 1% has no NDR"
    );
    assert_eq!(res.pdr.rate(), None, "nor a 0.5% PDR");
    assert!(res.trials.iter().all(|t| t.loss_ratio() > 0.005));
    // With a 2% allowance, the maximum rate passes.
    let res = search(
        &mut t,
        &SearchConfig {
            pdr_loss: 0.02,
            ..cfg
        },
        |l| println!("{l}"),
    )
    .unwrap();
    assert_eq!(res.pdr.rate(), Some(400_000.0));
}

#[test]
fn search_converges_to_a_policed_rate() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limit = 50_000.0;
    let imp = Impairment {
        rate_pps: Some(limit),
        // 30 ms of frames: the bucket absorbs the bursts of a generator catching up after being descheduled
        // on a busy machine, and lets at most 30 ms × rate more through over a trial: 6% of a 0.5 s trial.
        bucket: limit * 0.03,
        ..Impairment::default()
    };
    let (mut t, _) = impaired_trial(
        imp,
        Profile {
            proto: Proto::Tcp,
            flows: 64,
            ..Profile::default()
        },
    );
    let cfg = SearchConfig {
        min_pps: 10_000.0,
        max_pps: Some(200_000.0),
        trial_secs: 0.5,
        precision: 0.02,
        ..SearchConfig::default()
    };
    let res = search(&mut t, &cfg, |l| println!("{l}")).unwrap();
    let ndr = res.ndr.rate().expect("an NDR below the limit");
    let pdr = res.pdr.rate().expect("a PDR");
    // The true NDR is the limit (plus the bucket spread over a trial: 6%); the true PDR 0.5% above it.
    assert!(ndr > 0.9 * limit && ndr < 1.08 * limit, "NDR {ndr}");
    assert!(
        pdr >= ndr * 0.98 && pdr < 1.12 * limit,
        "PDR {pdr} NDR {ndr}"
    );
    assert!(res.ndr.done && res.pdr.done);
}

#[test]
fn latency_percentiles_follow_an_injected_delay() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let delay = Duration::from_millis(10);
    let imp = Impairment {
        delay,
        ..Impairment::default()
    };
    let (mut t, _) = impaired_trial(imp, Profile::default());
    let r = t.run(50_000.0, 0.4).unwrap();
    assert_eq!(r.lost(), 0, "{r:?}");
    let s = Summary::of(t.rx.histogram());
    println!("{s}");
    let d = delay.as_secs_f64() * 1e6;
    assert_eq!(s.count, r.received);
    // Nothing arrives before the delay; the median within 30% of it (polling adds microseconds; a loaded
    // machine that deschedules the polling thread adds milliseconds).
    assert!(s.min >= d * 0.999, "{s}");
    assert!(s.p50 < d * 1.3, "{s}");
    assert!(s.p90 >= s.p50 && s.p99 >= s.p90 && s.max >= s.p99);

    // Without delay, the same path is much faster: the delay is what was measured.
    let (mut t, _) = impaired_trial(Impairment::default(), Profile::default());
    t.run(50_000.0, 0.1).unwrap();
    let s0 = Summary::of(t.rx.histogram());
    assert!(s0.p50 < d / 3.0, "{s0}");
}
