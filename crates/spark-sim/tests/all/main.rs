//! Integration tests of spark-sim, one module per topic. Traces are built here or by
//! `spark_sim::synth`; nothing is read from outside the repository.

mod honesty;
mod model;
mod parse;
mod replay;
