//! Heap allocations per event of the mapping pipeline (the `mapping` benchmark's cases): a count, not a
//! time, so it is the same on every run and every host. `make bench` prints it as a Markdown table.
//! Stages are counted on the conversation event, as the `mapping` benchmark times them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use shared::keys::{payload_hash, KeyConfig};
use shared::{InboundEvent, Mapping};

mod cases;
use cases::{create_body, pipeline_cases, stages, update_note, ACW};

/// The system allocator, counting allocations (each reallocation as one) and the bytes asked for.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: u64 = 100;

/// Allocations and bytes per call of `f`, averaged over `ROUNDS` calls after one warm-up call.
fn count<T>(mut f: impl FnMut() -> T) -> (f64, f64) {
    black_box(f());
    let (a0, b0) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..ROUNDS {
        black_box(f());
    }
    let a = ALLOCATIONS.load(Ordering::Relaxed) - a0;
    let b = BYTES.load(Ordering::Relaxed) - b0;
    (a as f64 / ROUNDS as f64, b as f64 / ROUNDS as f64)
}

fn main() {
    // `cargo bench` passes `--bench` and criterion's filters; a count needs none of them.
    let mapping = Mapping::default_mapping().expect("default mapping");
    let keys = KeyConfig::default();
    let mut rows: Vec<(String, (f64, f64))> = Vec::new();
    for (name, raw) in pipeline_cases() {
        rows.push((
            format!("mapping/{name}"),
            count(|| create_body(&mapping, &keys, &raw)),
        ));
    }
    rows.push((
        "mapping/genesys_conversation_acw_update_note".into(),
        count(|| update_note(&mapping, &keys, ACW.as_bytes())),
    ));
    let st = stages(&mapping, &keys);
    rows.push((
        "stage/parse".into(),
        count(|| InboundEvent::parse(st.raw).expect("valid")),
    ));
    rows.push((
        "stage/payload_hash".into(),
        count(|| payload_hash(&st.event)),
    ));
    rows.push((
        "stage/key".into(),
        count(|| keys.derive_hashed(&st.event, &st.hash)),
    ));
    rows.push((
        "stage/apply".into(),
        count(|| mapping.apply(&st.event, &st.key.key).expect("maps")),
    ));
    rows.push((
        "stage/render_incident".into(),
        count(|| st.mapped.incident()),
    ));
    rows.push(("stage/serialise".into(), count(|| st.incident.to_json())));

    println!("| mapping benchmark | allocations per event | bytes allocated per event |");
    println!("| --- | ---: | ---: |");
    for (name, (allocations, bytes)) in rows {
        println!("| {name} | {allocations:.0} | {bytes:.0} |");
    }
}
