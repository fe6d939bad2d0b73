"""The deletion-serving layer: a live FAISS binary index, search, forget requests and their audit log.

Modules: ``store`` (versioned folder, manifest, lock, atomic swap), ``encode`` (codes of items and
queries), ``build``, ``search`` (``Searcher``), ``forget`` (the staged request), ``verify``
(verification numbers), ``audit`` (hash-chained SQLite log), ``service`` (FastAPI app). Nothing is
imported here, so ``import crossforget.index`` stays cheap.
"""
