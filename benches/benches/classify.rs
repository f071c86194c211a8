//! `ErrorClassifier` on errors of different depths: the cost of walking a
//! `source()` chain with downcasts, which every layer pays once per failed
//! call.

use std::error::Error;
use std::fmt;
use std::hint::black_box;
use std::io;

use battlement_benches::{allocs_per_call, report};
use battlement_core::{BoxError, Classify, ErrorClassifier};
use criterion::{Criterion, criterion_group, criterion_main};

/// A user error that wraps another, as client libraries do.
#[derive(Debug)]
struct Wrapper(&'static str, BoxError);

impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Error for Wrapper {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.1)
    }
}

fn nested_three_deep() -> Result<(), BoxError> {
    let io: BoxError = Box::new(io::Error::from(io::ErrorKind::ConnectionReset));
    Err(Box::new(Wrapper(
        "request failed",
        Box::new(Wrapper("connection error", io)),
    )))
}

fn bench(c: &mut Criterion) {
    let classifier = ErrorClassifier::new();
    let ok: Result<u32, BoxError> = Ok(1);
    let flat: Result<(), BoxError> = Err(Box::new(io::Error::from(io::ErrorKind::TimedOut)));
    let deep = nested_three_deep();
    let unknown: Result<(), BoxError> = Err("opaque".into());

    let mut group = c.benchmark_group("classify");
    group.bench_function("ok", |b| b.iter(|| classifier.classify(black_box(&ok))));
    group.bench_function("io_error", |b| {
        b.iter(|| classifier.classify(black_box(&flat)))
    });
    group.bench_function("nested_three_deep", |b| {
        b.iter(|| classifier.classify(black_box(&deep)))
    });
    group.bench_function("unknown", |b| {
        b.iter(|| classifier.classify(black_box(&unknown)))
    });
    group.finish();

    report(
        "classify/nested_three_deep",
        allocs_per_call(10_000, || {
            black_box(classifier.classify(black_box(&deep)));
        }),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
