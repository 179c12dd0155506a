//! Values out of files a user may write with other tools (pandas, polars, DuckDB, pyarrow): coreset,
//! scores, split. [`crate::schema::check_user`] accepts any integer type where molpeg writes `uint32`
//! and any float (or integer) type where it writes a float; the functions here convert with range
//! checks, and an error names the file, the column, the row and the value. Nullable columns are fine
//! as long as the values a column needs are present.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};

use crate::{Error, Result};

fn row_error(path: &Path, column: &str, row: usize, message: String) -> Error {
    Error::Row { path: path.to_path_buf(), row, message: format!("column `{column}`: {message}") }
}

/// An integer column (any Arrow integer type) as `u32` ids. `first_row` is the file row of the
/// array's first value (for errors). Nulls, negative values and values above `u32::MAX` are errors.
pub fn u32_values(path: &Path, column: &str, array: &dyn Array, first_row: usize) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(array.len());
    macro_rules! convert {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            for i in 0..a.len() {
                if a.is_null(i) {
                    return Err(row_error(path, column, first_row + i, "value is null; every row needs one".into()));
                }
                let v = a.value(i);
                let id = u32::try_from(v).map_err(|_| row_error(path, column, first_row + i, format!("value {v} is outside 0..={}", u32::MAX)))?;
                out.push(id);
            }
        }};
    }
    match array.data_type() {
        DataType::UInt32 => convert!(UInt32Type),
        DataType::Int64 => convert!(Int64Type),
        DataType::Int32 => convert!(Int32Type),
        DataType::Int16 => convert!(Int16Type),
        DataType::Int8 => convert!(Int8Type),
        DataType::UInt64 => convert!(UInt64Type),
        DataType::UInt16 => convert!(UInt16Type),
        DataType::UInt8 => convert!(UInt8Type),
        other => return Err(Error::invalid(path, format!("column `{column}` has type {other}; expected an integer type"))),
    }
    Ok(out)
}

/// A numeric column (any float or integer type) as `f64`, `None` where null.
pub fn f64_values(path: &Path, column: &str, array: &dyn Array) -> Result<Vec<Option<f64>>> {
    let t = array.data_type();
    if !(t.is_floating() || t.is_integer()) {
        return Err(Error::invalid(path, format!("column `{column}` has type {t}; expected a numeric type")));
    }
    let cast = arrow::compute::cast(array, &DataType::Float64).map_err(|e| Error::arrow(path, e))?;
    Ok(cast.as_primitive::<Float64Type>().iter().collect())
}

/// A numeric column as `f32` values that every row must have: nulls and finite values outside
/// `f32`'s range are errors naming the row.
pub fn f32_required(path: &Path, column: &str, array: &dyn Array, first_row: usize) -> Result<Vec<f32>> {
    f64_values(path, column, array)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            None => Err(row_error(path, column, first_row + i, "value is null; every row needs one".into())),
            Some(v) if v.is_finite() && v.abs() > f32::MAX as f64 => {
                Err(row_error(path, column, first_row + i, format!("value {v} does not fit a 32-bit float")))
            }
            Some(v) => Ok(v as f32),
        })
        .collect()
}

/// A string column (Utf8, LargeUtf8, Utf8View or a dictionary of strings, as pandas categoricals are
/// written) as owned strings; nulls are errors naming the row.
pub fn strings(path: &Path, column: &str, array: &dyn Array, first_row: usize) -> Result<Vec<String>> {
    let cast = arrow::compute::cast(array, &DataType::Utf8)
        .map_err(|e| Error::invalid(path, format!("column `{column}` has type {}, not strings: {e}", array.data_type())))?;
    cast.as_string::<i32>()
        .iter()
        .enumerate()
        .map(|(i, v)| v.map(str::to_string).ok_or_else(|| row_error(path, column, first_row + i, "value is null; every row needs one".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Float64Array, Int64Array, StringArray};

    #[test]
    fn ids_of_any_integer_type_with_range_checks() {
        let p = Path::new("c.parquet");
        assert_eq!(u32_values(p, "mol_id", &Int64Array::from(vec![0, 7, 4_294_967_295]), 0).unwrap(), vec![0, 7, u32::MAX]);
        let err = u32_values(p, "mol_id", &Int64Array::from(vec![1, -3]), 10).unwrap_err().to_string();
        assert!(err.contains("c.parquet") && err.contains("row 11") && err.contains("`mol_id`") && err.contains("-3"), "{err}");
        let err = u32_values(p, "mol_id", &Int64Array::from(vec![Some(1), None]), 0).unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("null"), "{err}");
        let err = u32_values(p, "mol_id", &Int64Array::from(vec![5_000_000_000]), 0).unwrap_err().to_string();
        assert!(err.contains("5000000000"), "{err}");
        assert!(u32_values(p, "mol_id", &Float64Array::from(vec![1.0]), 0).is_err());
    }

    #[test]
    fn floats_and_strings() {
        let p = Path::new("s.parquet");
        assert_eq!(f32_required(p, "weight", &Float64Array::from(vec![2.5, 1.0]), 0).unwrap(), vec![2.5, 1.0]);
        assert_eq!(f32_required(p, "weight", &Int64Array::from(vec![3]), 0).unwrap(), vec![3.0]);
        let err = f32_required(p, "weight", &Float64Array::from(vec![1.0, 1e300]), 0).unwrap_err().to_string();
        assert!(err.contains("row 1") && err.contains("`weight`") && err.contains("does not fit"), "{err}");
        assert_eq!(f64_values(p, "x", &Float64Array::from(vec![Some(1.0), None])).unwrap(), vec![Some(1.0), None]);
        let dict: DictionaryArray<Int32Type> = vec!["train", "test", "train"].into_iter().collect();
        assert_eq!(strings(p, "split", &dict, 0).unwrap(), vec!["train", "test", "train"]);
        let err = strings(p, "split", &StringArray::from(vec![Some("a"), None]), 3).unwrap_err().to_string();
        assert!(err.contains("row 4"), "{err}");
    }
}
