//! S3-FIFO (Yang et al., SOSP '23).

use std::collections::VecDeque;

use super::{Capacity, DList, Node, SimPolicy};
use crate::trace::Req;

const OUT: u8 = 0;
const SMALL: u8 = 1;
const MAIN: u8 = 2;

/// S3-FIFO: new objects enter a small FIFO (10% of the cache); those
/// requested again while there move to the main FIFO, the rest leave and
/// are remembered in a ghost FIFO, from which a returning object goes
/// straight to main. Main is a FIFO with reinsertion of objects requested
/// since they were last looked at (a 2-bit frequency counter).
#[derive(Debug)]
pub struct S3Fifo {
    nodes: Vec<Node>,
    queue: Vec<u8>,
    freq: Vec<u8>,
    weight: Vec<u32>,
    small: DList,
    main: DList,
    small_used: u64,
    main_used: u64,
    /// Ghost entries (id, generation); an entry is live while the id's
    /// ghost generation still matches.
    ghost: VecDeque<(u32, u32)>,
    ghost_gen: Vec<u32>,
    ghost_used: u64,
    gen: u32,
    cap: Capacity,
}

impl S3Fifo {
    /// An empty cache for `objects` distinct ids.
    pub fn new(cap: Capacity, objects: usize) -> Self {
        S3Fifo {
            nodes: vec![Node::default(); objects],
            queue: vec![OUT; objects],
            freq: vec![0; objects],
            weight: vec![0; objects],
            small: DList::default(),
            main: DList::default(),
            small_used: 0,
            main_used: 0,
            ghost: VecDeque::new(),
            ghost_gen: vec![0; objects],
            ghost_used: 0,
            gen: 0,
            cap,
        }
    }

    fn small_target(&self) -> u64 {
        (self.cap.size / 10).max(1)
    }

    fn remember(&mut self, v: u32) {
        self.gen = self.gen.wrapping_add(1).max(1);
        self.ghost_gen[v as usize] = self.gen;
        self.ghost.push_back((v, self.gen));
        self.ghost_used += u64::from(self.weight[v as usize]);
        let limit = self.cap.size - self.small_target().min(self.cap.size);
        while self.ghost_used > limit.max(1) {
            let Some((g, gen)) = self.ghost.pop_front() else {
                break;
            };
            // The weight was recorded when the ghost entry was made and is
            // still in `weight` (cleared only on readmission).
            self.ghost_used = self
                .ghost_used
                .saturating_sub(u64::from(self.weight[g as usize]));
            if self.ghost_gen[g as usize] == gen {
                self.ghost_gen[g as usize] = 0;
            }
        }
    }

    fn evict_small(&mut self) {
        while let Some(v) = self.small.pop_back(&mut self.nodes) {
            let vi = v as usize;
            let w = u64::from(self.weight[vi]);
            self.small_used -= w;
            if self.freq[vi] > 0 {
                self.freq[vi] = 0;
                self.queue[vi] = MAIN;
                self.main.push_front(&mut self.nodes, v);
                self.main_used += w;
                if self.main_used > self.cap.size - self.small_target().min(self.cap.size) {
                    self.evict_main();
                }
            } else {
                self.queue[vi] = OUT;
                self.remember(v);
                return;
            }
        }
    }

    fn evict_main(&mut self) {
        while let Some(v) = self.main.pop_back(&mut self.nodes) {
            let vi = v as usize;
            if self.freq[vi] > 0 {
                self.freq[vi] -= 1;
                self.main.push_front(&mut self.nodes, v);
            } else {
                self.main_used -= u64::from(self.weight[vi]);
                self.queue[vi] = OUT;
                return;
            }
        }
    }
}

impl SimPolicy for S3Fifo {
    fn request(&mut self, r: &Req) -> bool {
        let i = r.id as usize;
        if self.queue[i] != OUT {
            self.freq[i] = (self.freq[i] + 1).min(3);
            return true;
        }
        let w = self.cap.weight(r).max(1);
        if w > self.cap.size {
            return false;
        }
        while self.small_used + self.main_used + w > self.cap.size {
            if self.small_used >= self.small_target() || self.main.len == 0 {
                self.evict_small();
            } else {
                self.evict_main();
            }
        }
        let was_ghost = self.ghost_gen[i] != 0;
        self.ghost_gen[i] = 0;
        self.weight[i] = w as u32;
        self.freq[i] = 0;
        if was_ghost {
            self.queue[i] = MAIN;
            self.main.push_front(&mut self.nodes, r.id);
            self.main_used += w;
        } else {
            self.queue[i] = SMALL;
            self.small.push_front(&mut self.nodes, r.id);
            self.small_used += w;
        }
        false
    }
}
