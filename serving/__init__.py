"""What answers a query, without HTTP: the served index with its catalog snapshot
(:mod:`serving.state`), filters as faiss selectors (:mod:`serving.selectors`), one query plan
(:mod:`serving.plan`) and the pipeline that runs it (:mod:`serving.pipeline`): candidates →
filters → blend → re-rank (near-duplicates, diversity, channel caps) → page → present.

It sits between ``index`` and ``api``: routes build a plan and hand it here; errors are domain
errors (:mod:`serving.errors`) that the API's table turns into HTTP answers.
"""
