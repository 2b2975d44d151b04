//! Parquet: one row group, one optional column per frame column (text as UTF-8 strings, times as
//! their ISO-8601 text), uncompressed: report tables are small, and every reader (pyarrow, pandas,
//! DuckDB, Spark) opens the file as it is.

use std::sync::Arc;

use parquet::basic::{LogicalType, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use super::frame::{Frame, Kind, Value};

pub fn write(frame: &Frame) -> anyhow::Result<Vec<u8>> {
    let mut fields = Vec::with_capacity(frame.columns.len());
    for column in &frame.columns {
        let (physical, logical) = match column.kind {
            Kind::Text | Kind::Time => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            Kind::Int => (Physical::INT64, None),
            Kind::Float => (Physical::DOUBLE, None),
            Kind::Bool => (Physical::BOOLEAN, None),
        };
        let field = Type::primitive_type_builder(&column.name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()?;
        fields.push(Arc::new(field));
    }
    let schema = Arc::new(Type::group_type_builder("schema").with_fields(fields).build()?);
    let mut bytes = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut bytes, schema, Arc::new(WriterProperties::builder().build()))?;
    let mut group = writer.next_row_group()?;
    for (c, column) in frame.columns.iter().enumerate() {
        let values = frame.rows.iter().map(|row| &row[c]);
        // Definition level 1: a value; 0: null (only the values themselves are written).
        let defined: Vec<i16> = values.clone().map(|v| i16::from(!matches!(v, Value::Null))).collect();
        let mut out = group.next_column()?.ok_or_else(|| anyhow::anyhow!("no Parquet column for {}", column.name))?;
        match column.kind {
            Kind::Text | Kind::Time => {
                let data: Vec<ByteArray> = values.filter_map(Value::as_str).map(ByteArray::from).collect();
                out.typed::<ByteArrayType>().write_batch(&data, Some(&defined), None)?;
            }
            Kind::Int => {
                let data: Vec<i64> = values.filter_map(Value::as_i64).collect();
                out.typed::<Int64Type>().write_batch(&data, Some(&defined), None)?;
            }
            Kind::Float => {
                let data: Vec<f64> = values.filter_map(Value::as_f64).collect();
                out.typed::<DoubleType>().write_batch(&data, Some(&defined), None)?;
            }
            Kind::Bool => {
                let data: Vec<bool> = values.filter_map(Value::as_bool).collect();
                out.typed::<BoolType>().write_batch(&data, Some(&defined), None)?;
            }
        }
        out.close()?;
    }
    group.close()?;
    writer.close()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_with_nulls_becomes_a_parquet_file() {
        let mut frame = Frame::new(&[("id", Kind::Text), ("n", Kind::Int), ("x", Kind::Float), ("ok", Kind::Bool)]);
        frame.push(vec![Value::Text("a".into()), Value::Int(1), Value::Float(0.5), Value::Bool(true)]);
        frame.push(vec![Value::Null, Value::Null, Value::Null, Value::Null]);
        let bytes = write(&frame).unwrap();
        assert_eq!((&bytes[..4], &bytes[bytes.len() - 4..]), (&b"PAR1"[..], &b"PAR1"[..]));
    }
}
