//! The default simnet topology and its seeded traffic: payments route sluice → peer → loop,
//! traffic drains and refills sluice's channels, and the same seed repeats the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sluice::domain::{ChanId, Sat};
use sluice::lnd::LightningNode;
use sluice::lnd::types::{PaymentRequest, PaymentStatus};
use sluice::simnet::world::traffic::{Traffic, TrafficConfig, TrafficReport};
use sluice::simnet::world::{SimNode, World, WorldConfig, lock};

fn balances(world: &World) -> Vec<(ChanId, Sat)> {
    let sluice = world.node_index("sluice").unwrap();
    world
        .list_channels(sluice)
        .into_iter()
        .map(|c| (c.chan_id, c.local_balance))
        .collect()
}

fn run(seed: u64, config: TrafficConfig, hours: u32) -> (Vec<(ChanId, Sat)>, TrafficReport, usize) {
    let mut world = World::new(WorldConfig::default_topology(seed, 4)).unwrap();
    let mut traffic = Traffic::new(config);
    let mut total = TrafficReport::default();
    for _ in 0..hours * 6 {
        world.advance_clock(600.0);
        let r = traffic.step(&mut world, Duration::from_secs(600)).unwrap();
        total.attempted += r.attempted;
        total.succeeded += r.succeeded;
        total.failed += r.failed;
        total.delivered += r.delivered;
    }
    let sluice = world.node_index("sluice").unwrap();
    let forwards = world.forwards(sluice).len();
    // Traffic keeps no invoices behind, settled or failed.
    assert_eq!(
        world
            .nodes()
            .map(|(i, _)| world.invoices(i).count())
            .sum::<usize>(),
        0
    );
    (balances(&world), total, forwards)
}

#[test]
fn the_same_seed_repeats_the_same_traffic_and_balances_move() {
    let start = balances(&World::new(WorldConfig::default_topology(3, 4)).unwrap());
    let (a, report, forwards) = run(3, TrafficConfig::balanced(9, 60.0), 4);
    let (b, again, _) = run(3, TrafficConfig::balanced(9, 60.0), 4);
    assert_eq!(a, b);
    assert_eq!(report, again);
    assert!(report.attempted > 100, "{report:?}");
    assert!(report.succeeded > 0);
    assert_eq!(forwards, report.succeeded as usize);
    assert_ne!(a, start);
    let (c, _, _) = run(3, TrafficConfig::balanced(10, 60.0), 4);
    assert_ne!(a, c, "another traffic seed gives another run");
}

#[test]
fn an_outward_bias_drains_the_channel() {
    let world = World::new(WorldConfig::default_topology(3, 4)).unwrap();
    let start = balances(&world);
    let drained = start[0].0;
    let mut config = TrafficConfig::balanced(9, 120.0);
    config.outward_bias = HashMap::from([(drained, 1.0)]);
    let (end, _, _) = run(3, config, 6);
    let before = start[0].1;
    let after = end.iter().find(|(id, _)| *id == drained).unwrap().1;
    assert!(after < before, "{before} -> {after}");
    // The total sluice holds only grows: it earns fees on every forward.
    let sum = |v: &[(ChanId, Sat)]| v.iter().map(|(_, s)| s.0).sum::<u64>();
    assert!(sum(&end) >= sum(&start));
}

#[tokio::test]
async fn the_default_topology_routes_sluice_through_a_peer_to_loop() {
    let world = Arc::new(Mutex::new(
        World::new(WorldConfig::default_topology(1, 3)).unwrap(),
    ));
    let sluice = SimNode::new(world.clone(), "sluice").unwrap();
    let lp = SimNode::new(world.clone(), "loop").unwrap();
    assert_eq!(sluice.list_channels().await.unwrap().len(), 3);
    assert_eq!(lp.list_channels().await.unwrap().len(), 3);
    let (invoice, _) = lp.add_invoice(Sat(50_000).to_msat(), "swap").unwrap();
    let mut s = sluice
        .pay(&PaymentRequest {
            invoice,
            fee_limit: Sat(1_000).to_msat(),
            outgoing_chan_ids: Vec::new(),
            max_parts: 1,
            timeout: Duration::from_secs(60),
            cltv_limit: None,
            last_hop: None,
        })
        .await
        .unwrap();
    let last = loop {
        let u = s.next().await.unwrap().unwrap();
        if u.status.is_final() {
            break u;
        }
    };
    assert!(
        matches!(last.status, PaymentStatus::Succeeded { .. }),
        "{last:?}"
    );
    let guard = lock(&world);
    let forwarded: usize = guard
        .nodes()
        .filter(|(_, alias)| alias.starts_with("peer"))
        .map(|(i, _)| guard.forwards(i).len())
        .sum();
    assert_eq!(forwarded, 1);
}
