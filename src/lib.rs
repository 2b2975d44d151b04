//! efen: a drop-folder segmentation pipeline for medical images.
//!
//! # Layout
//! In the order a case passes through them:
//! - [`ingest`]: find, vet, claim and hash input files; pair ground truth; case identity; admit
//!   each case (claim it in the store, hand it on).
//! - [`decode`]: bytes → RGB image (PNG, JPEG, TIFF, BMP; 8/16-bit; gray, RGB, RGBA).
//! - [`dicom`]: DICOM objects: every common transfer syntax → frames, slice geometry and stacks,
//!   the identity for the record, and the DICOM SEG that emit writes.
//! - [`series`]: a DICOM series as one case: instances gathered by series, split into stacks, their
//!   slices' masks assembled into one bit-packed volume.
//! - [`preprocess`]: image → normalized tensor at the model's size (resize or letterbox).
//! - [`infer`]: batches of tensors through ONNX Runtime, on worker threads.
//! - [`postprocess`]: output map → binary mask at the image's size (and bit-packed for a series).
//! - [`metrics`]: DSC, IoU, mIoU, precision, recall against ground truth.
//! - [`output`]: mask.png, overlay.png, result.json; for a series mask.nii.gz and a montage.
//! - [`store`]: runs, cases, results, the send queue and the audit log in PostgreSQL or SQLite.
//!
//! Between them travels a [`case`]. Each stage owns its settings (an `XConfig` beside it).
//! Around them: [`pipeline`] wires the stages (the only module that knows them all) and drives
//! `efen run` and `efen watch`, [`model`] reads model cards, [`runtime`] loads ONNX Runtime,
//! [`config`] composes the stages' settings, [`shutdown`]
//! turns signals into a drain, [`node`] makes `efen watch` a DICOM node (Storage SCP, series,
//! outbox of SEGs by C-STORE or STOW-RS), [`http`] gives it health checks, Prometheus metrics
//! (from the typed events of [`telemetry`]), a cases API and DICOMweb STOW-RS, [`doctor`] checks an installation, [`bench`] measures the
//! pipeline against bare ONNX Runtime, [`report`] reads the store into reports and [`cli`] is the
//! face on the terminal (flags, progress, tables, exit codes).

pub mod bench;
pub mod case;
pub mod cli;
pub mod config;
pub mod decode;
pub mod dicom;
pub mod doctor;
pub mod http;
pub mod infer;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod node;
pub mod output;
pub mod pipeline;
pub mod postprocess;
pub mod preprocess;
pub mod report;
pub mod runtime;
pub mod series;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod telemetry;
