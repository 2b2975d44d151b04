//! efen: a drop-folder segmentation pipeline for medical images.
//!
//! # Layout
//! In the order a case passes through them:
//! - [`ingest`]: find, vet, claim and hash input files; pair ground truth; case identity; gather
//!   a DICOM series' instances and split it into stacks; admit each case (claim it in the store,
//!   hand it on).
//! - [`decode`]: bytes → RGB image (PNG, JPEG, TIFF, BMP; 8/16-bit; gray, RGB, RGBA).
//! - [`dicom`]: DICOM objects: every common transfer syntax → frames, slice geometry and stacks,
//!   the identity for the record, the DICOM SEG and the TID 1500 SR that emit writes, the status
//!   codes of both faces.
//! - [`preprocess`]: image → normalized tensor at the model's size (resize or letterbox).
//! - [`infer`]: batches of tensors through ONNX Runtime, on worker threads.
//! - [`postprocess`]: output map → binary mask at the image's size (and bit-packed for a series).
//! - [`metrics`]: DSC, IoU, mIoU, precision, recall against ground truth.
//! - [`output`]: mask.png, overlay.png, result.json; for a series mask.nii.gz and a montage.
//! - [`store`]: runs, cases, results, the send queue and the audit log in PostgreSQL or SQLite.
//!
//! Between them travel the values of a [`case`] (a series case too), and a failed case carries
//! its stage's own error to the record ([`error`]: the error type, the grouping reason). Each
//! stage owns its settings (an `XConfig` beside it).
//!
//! Around them: [`pipeline`] wires the stages (the only module that knows them all, and the owner
//! of the work in flight: canvases, accumulators, a series' assembly) and drives `efen run` and
//! `efen watch`; [`model`] reads model cards; [`runtime`] loads ONNX Runtime; [`config`]
//! composes the stages' settings; [`shutdown`] turns signals into a drain; [`systemd`] tells a
//! `Type=notify` unit when `efen watch` is ready and when it drains; [`listen`] accepts
//! connections for the servers; [`node`] makes `efen watch` a DICOM node (Storage SCP, series
//! handed to admission whole, outbox of SEGs and SRs by C-STORE or STOW-RS); [`http`] gives it health checks, Prometheus metrics
//! (from the typed events of [`telemetry`]: one struct per event, whose `emit()` logs and counts),
//! a cases API and DICOMweb STOW-RS; [`doctor`] checks an installation; [`bench`] measures the
//! pipeline against bare ONNX Runtime; [`report`] reads the store into reports; [`cli`] is the
//! face on the terminal (flags, progress, tables, exit codes).
//!
//! The floors (checked by `scripts/import-graph.py` in the test suite): no room imports one that
//! imports it back; only the wiring and the faces (`pipeline`, `cli`, `doctor`, `bench`,
//! `config`) import the faces and the wiring (`pipeline`, `cli`, `http`, `doctor`, `bench`); only
//! they read the composed `Config`, every other room is handed its own section.

pub mod bench;
pub mod case;
pub mod cli;
pub mod config;
pub mod decode;
pub mod dicom;
pub mod doctor;
pub mod error;
pub mod http;
pub mod infer;
pub mod ingest;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod node;
pub mod output;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
pub mod report;
pub mod runtime;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod telemetry;
