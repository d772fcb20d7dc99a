"""The Streamlit review app (`streamlit run app/main.py`): it imports `auditor`, never the other way round."""
