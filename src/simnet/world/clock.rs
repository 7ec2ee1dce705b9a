//! Simulated time: a block every `block_interval` of simulated time and traffic in between,
//! with simulated time running `speed` times faster than the wall clock.
//!
//! [`SimClock::advance`] is the synchronous step (tests call it directly); [`run`] calls it
//! on a wall-clock timer until canceled, which is what `sluiced --simnet` spawns.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::traffic::{Traffic, TrafficReport};
use super::{SharedWorld, World, WorldError, lock};

/// How simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockConfig {
    /// Simulated time between blocks (Bitcoin: 10 minutes).
    pub block_interval: Duration,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// Wall-clock time between steps of [`run`].
    pub tick: Duration,
}

impl Default for ClockConfig {
    /// A block every 10 simulated minutes, 60× faster than the wall clock (a block every
    /// 10 s), stepped every 250 ms.
    fn default() -> Self {
        ClockConfig {
            block_interval: Duration::from_secs(600),
            speed: 60.0,
            tick: Duration::from_millis(250),
        }
    }
}

/// What one step of the clock did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockStep {
    /// Blocks mined.
    pub blocks: u32,
    /// The traffic generated.
    pub traffic: TrafficReport,
}

/// Simulated time with its block schedule and optional traffic.
#[derive(Debug)]
pub struct SimClock {
    config: ClockConfig,
    since_block: Duration,
    traffic: Option<Traffic>,
}

impl SimClock {
    /// A clock; with `traffic`, payments flow as time passes.
    pub fn new(config: ClockConfig, traffic: Option<Traffic>) -> SimClock {
        SimClock {
            config,
            since_block: Duration::ZERO,
            traffic,
        }
    }

    /// Moves simulated time forward by `dt`: the world's clock, the traffic of that span,
    /// and every block that falls due.
    pub fn advance(&mut self, world: &mut World, dt: Duration) -> Result<ClockStep, WorldError> {
        let mut step = ClockStep::default();
        world.advance_clock(dt.as_secs_f64());
        if let Some(traffic) = &mut self.traffic {
            step.traffic = traffic.step(world, dt)?;
        }
        self.since_block += dt;
        let interval = self.config.block_interval.max(Duration::from_millis(1));
        while self.since_block >= interval {
            self.since_block -= interval;
            world.mine(1);
            step.blocks += 1;
        }
        Ok(step)
    }

    /// Simulated time per wall-clock tick.
    pub fn simulated_tick(&self) -> Duration {
        self.config.tick.mul_f64(self.config.speed.max(0.0))
    }
}

/// Advances `clock` every wall-clock tick until `cancel` fires. A failing step (e.g. the
/// traffic node missing) ends the loop with its error.
pub async fn run(
    world: SharedWorld,
    mut clock: SimClock,
    cancel: CancellationToken,
) -> Result<(), WorldError> {
    let mut interval = tokio::time::interval(clock.config.tick.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let dt = clock.simulated_tick();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = interval.tick() => {
                clock.advance(&mut lock(&world), dt)?;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::simnet::world::WorldConfig;
    use crate::simnet::world::traffic::TrafficConfig;

    #[test]
    fn blocks_fall_due_on_simulated_time_and_traffic_flows() {
        let mut world = World::new(WorldConfig::default_topology(5, 3)).unwrap();
        let start = world.height();
        let mut clock = SimClock::new(
            ClockConfig::default(),
            Some(Traffic::new(TrafficConfig::balanced(1, 600.0))),
        );
        let mut blocks = 0;
        let mut attempted = 0;
        for _ in 0..10 {
            let step = clock.advance(&mut world, Duration::from_secs(150)).unwrap();
            blocks += step.blocks;
            attempted += step.traffic.attempted;
        }
        // 1,500 simulated seconds: two blocks of 600 s, 300 s carried over.
        assert_eq!((blocks, world.height().0 - start.0), (2, 2));
        assert!(attempted > 100, "{attempted}");
        assert_eq!(world.now_unix(), 1_700_000_000 + 1_500);
        assert_eq!(clock.simulated_tick(), Duration::from_secs(15));
    }

    #[tokio::test(start_paused = true)]
    async fn run_mines_until_canceled() {
        let world = Arc::new(Mutex::new(
            World::new(WorldConfig::default_topology(5, 2)).unwrap(),
        ));
        let start = lock(&world).height();
        let mut blocks = lock(&world).subscribe();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(
            world.clone(),
            SimClock::new(ClockConfig::default(), None),
            cancel.clone(),
        ));
        // With paused time the runtime jumps ahead; wait for two blocks.
        let mut seen = 0;
        while seen < 2 {
            if let Ok(crate::simnet::world::WorldEvent::BlockConnected { .. }) = blocks.recv().await
            {
                seen += 1;
            }
        }
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert!(lock(&world).height().0 >= start.0 + 2);
    }
}
