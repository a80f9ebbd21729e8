//! `nfq-delay QUEUE DELAY_MS`: holds every packet that iptables sends to NFQUEUE number QUEUE
//! for DELAY_MS milliseconds, then accepts it, in arrival order. A stand-in for
//! `tc qdisc ... netem delay` on kernels without sch_netem. Put it on a router namespace's
//! FORWARD chain and every packet crossing the router, both ways, is delayed: an RTT of
//! 2 × DELAY_MS across it. Runs until killed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use nfq::{Queue, Verdict};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: nfq-delay QUEUE DELAY_MS",
        )
    };
    let queue_num: u16 = args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let delay = Duration::from_millis(args.next().and_then(|a| a.parse().ok()).ok_or_else(usage)?);
    let mut queue = Queue::open()?;
    queue.bind(queue_num)?;
    queue.set_copy_range(queue_num, 64)?;
    queue.set_queue_max_len(queue_num, 4096)?;
    queue.set_nonblocking(true);
    eprintln!("nfq-delay: queue {queue_num}, holding packets {delay:?}");
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        // Take everything that has arrived.
        loop {
            match queue.recv() {
                Ok(msg) => held.push_back((Instant::now() + delay, msg)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        // Release what is due.
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, mut msg) = held.pop_front().unwrap();
            msg.set_verdict(Verdict::Accept);
            queue.verdict(msg)?;
        }
        // Poll at 0.2 ms: the added jitter is well under 1 % of the delay.
        std::thread::sleep(Duration::from_micros(200));
    }
}
