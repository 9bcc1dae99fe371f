"""Apache Airflow 3: its components, forked from one process that imported Airflow once."""
