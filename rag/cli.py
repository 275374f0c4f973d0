"""The `rag` command line: index, ask, serve, eval.

Heavy libraries (torch, faiss) are imported only inside the commands, so `rag --help` is instant.
Expected failures print one line, `rag: error: ...`, and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rag.config import Settings
from rag.errors import IndexMissingError, RagError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import uvicorn

    from rag.encoders import Encoder
    from rag.retrieve import Retriever
    from rag.schema import SearchRequest, SearchResponse

EXAMPLES = """examples:
  rag index                                   bring the index of ./corpus up to date (only changes are embedded)
  rag index --full                            rebuild it from scratch
  rag index --full --ray head:6379            embed on a Ray cluster (no address: a local one for the run)
  rag ask "外国人可以用支付宝激活医保电子凭证吗"     top 5 passages with citations
  rag ask "Can a foreigner activate it through Alipay?" -k 3 --json
  rag ask "外国人能用支付宝吗" --server http://127.0.0.1:8000   ask a running server (fast)
  rag serve --port 8000                       HTTP API on http://127.0.0.1:8000 (docs at /docs)
  rag eval tests/data/questions.jsonl         recall@k, MRR and nDCG of the retriever

settings come from flags, then RAG_* environment variables (RAG_MODEL, RAG_CACHE_DIR, ...)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _port(text: str) -> int:
    """A TCP port as --port takes it; anything else is a usage error, not a failed bind."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= port <= 65535:  # 0: any free port
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {port}")
    return port


def build_parser() -> Parser:
    parser = Parser(
        prog="rag",
        description="Bilingual (Chinese/English) retrieval with exact citations.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def locations(p: argparse.ArgumentParser) -> None:
        p.add_argument("--corpus", type=Path, metavar="DIR", help="corpus folder (default: ./corpus or RAG_CORPUS_DIR)")
        p.add_argument("--index", type=Path, metavar="DIR", help="index folder (default: ./index or RAG_INDEX_DIR)")

    p = sub.add_parser(
        "index",
        help="build the index from the corpus",
        description="Chunk and index every .txt/.md file of the corpus, embedding only passages that are new or "
        "changed since the live index, then switch to the new index atomically. Prints what changed.",
    )
    locations(p)
    p.add_argument("--full", action="store_true", help="embed every passage again instead of reusing the live index's vectors")
    p.add_argument("--no-wait", action="store_true", help="exit at once if another build is writing the index, instead of waiting")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="embed with Ray Data on the cluster at ADDRESS (host:port, ray://host:10001 or auto), "
        "or on a local Ray started for this run when no ADDRESS is given",
    )

    p = sub.add_parser(
        "ask",
        help="ask one question",
        description="Print the passages that best answer QUESTION, with citations. Builds the index first if there is none.",
    )
    p.add_argument("question", help="the question, in Chinese or English")
    p.add_argument("-k", "--top-k", type=int, default=5, metavar="N", help="passages to return, 1-50 (default 5)")
    p.add_argument("--json", action="store_true", help="print the same JSON answer as POST /search")
    p.add_argument(
        "--server",
        metavar="URL",
        help="ask a running `rag serve` at URL instead of loading the index here (default: RAG_SERVER); well under a second",
    )
    locations(p)

    p = sub.add_parser(
        "serve",
        help="run the HTTP API",
        description="Serve the HTTP API (OpenAPI docs at /docs, a search page at /). Builds the index first if there is none.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port, 0-65535 (default 8000)")
    locations(p)

    p = sub.add_parser(
        "eval",
        help="measure retrieval quality",
        description="Evaluate on a question file (JSONL: id, question, lang, answers) or a BEIR folder and print "
        "recall@1/5/10, MRR@10 and nDCG@10, overall and per language.",
    )
    p.add_argument("file", type=Path, nargs="?", help="questions JSONL file (evaluated against the corpus index)")
    p.add_argument("--beir", type=Path, metavar="DIR", help="a BEIR folder: index its corpus in memory, score its queries and qrels")
    p.add_argument(
        "--negatives", type=Path, metavar="DIR", help="with --beir: another BEIR folder whose queries are asked as out-of-corpus questions"
    )
    p.add_argument("-k", type=int, default=10, metavar="N", help="depth of the ranking to score (default 10)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    locations(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env(corpus_dir=getattr(args, "corpus", None), index_dir=getattr(args, "index", None))
        command = {"index": cmd_index, "ask": cmd_ask, "serve": cmd_serve, "eval": cmd_eval}[args.command]
        return command(args, settings)
    except RagError as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an unforeseen environment: still one line, the traceback on request
        if os.environ.get("RAG_DEBUG"):
            raise
        print(f"rag: internal error: {type(exc).__name__}: {exc} (run again with RAG_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from rag.encoders import load_encoders
    from rag.index import build_index

    progress = not args.quiet
    stage = (lambda text: print(f"rag index: {text}", file=sys.stderr, flush=True)) if progress else None
    with contextlib.ExitStack() as stack:
        if args.ray:  # a wrong address fails in one line before any work; the cluster is joined only to embed
            from rag.encoders.ray_pool import check_reachable

            check_reachable(args.ray)

        def encoders() -> Mapping[str, Encoder]:
            """Loaded only when some passage needs embedding; with --ray, wrapped to embed on the cluster
            (so an up-to-date index neither starts nor joins one)."""
            local = load_encoders(settings, progress)
            if args.ray is None:
                return local
            from rag.encoders.ray_pool import ray_encoders, ray_session

            if stage:
                stage(f"connecting to the Ray cluster at {args.ray}" if args.ray else "starting a local Ray cluster")
            return ray_encoders(settings, local, stack.enter_context(ray_session(args.ray or None)))

        report = build_index(settings, encoders, progress, full=args.full, wait=not args.no_wait, stage=stage)
    skipped = f", skipped {len(report.skipped)} unreadable" if report.skipped else ""
    print(report.summary())
    print(f"indexed {report.documents} documents into {report.passages} passages{skipped} in {report.seconds:.1f} s -> {report.path}")
    return 0


def open_retriever(settings: Settings, build_if_missing: bool = True) -> Retriever:
    """Encoder plus live index; builds the index first when none exists yet."""
    from rag.encoders import load_encoders
    from rag.index import build_index, load_index
    from rag.retrieve import Retriever

    try:
        index = load_index(settings)  # first, so a broken index fails in a second, not after loading the model
    except IndexMissingError:
        if not build_if_missing:
            raise
        print(f"no index in {settings.index_dir} yet; building it from {settings.corpus_dir} ...", file=sys.stderr)
        encoders = load_encoders(settings)
        report = build_index(settings, encoders)
        print(f"indexed {report.documents} documents into {report.passages} passages", file=sys.stderr)
        index = load_index(settings)
    else:
        encoders = load_encoders(settings)
    return Retriever(settings, encoders, index)


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from rag.schema import SearchRequest, format_validation_error

    if any("\udc80" <= ch <= "\udcff" for ch in args.question):  # bytes the locale could not decode
        raise RagError("the question is not valid UTF-8; check the terminal's encoding (LANG, LC_ALL)")
    try:
        request = SearchRequest(question=args.question, top_k=args.top_k)
    except ValidationError as exc:
        raise RagError(format_validation_error([dict(e) for e in exc.errors()]).replace("top_k:", "-k:")) from None
    server = args.server or os.environ.get("RAG_SERVER")
    answer = _ask_server(server, request) if server else _ask_here(settings, request)
    if args.json:
        print(json.dumps(answer.model_dump(), ensure_ascii=False, indent=2))
        return 0
    print(format_answer(answer, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    return 0


def _ask_here(settings: Settings, request: SearchRequest) -> SearchResponse:
    """Load the index and the models in this process (several seconds) and search."""
    from rag.schema import check_question_tokens, to_response

    retriever = open_retriever(settings)
    try:
        check_question_tokens(retriever.question_tokens(request.question))
    except ValueError as exc:
        raise RagError(f"question: {exc}") from None
    started = time.perf_counter()
    found = retriever.answer(request.question, request.top_k)
    return to_response(request.question, found, (time.perf_counter() - started) * 1000)


def _ask_server(url: str, request: SearchRequest) -> SearchResponse:
    """Ask a running `rag serve` (well under a second: nothing to load)."""
    import httpx

    from rag.schema import SearchResponse

    try:
        response = httpx.post(f"{url.rstrip('/')}/search", json=request.model_dump(), timeout=60)
    except httpx.HTTPError as exc:
        raise RagError(f"cannot reach the server at {url} ({exc}); start it with `rag serve`, or ask without --server") from None
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text[:200]
        raise RagError(f"the server at {url} answered {response.status_code}: {detail}")
    return SearchResponse.model_validate(response.json())


def format_answer(answer: SearchResponse, color: bool) -> str:
    """What `rag ask` prints: a citation line per passage, then its text with the highlight marked
    (bold on a terminal, [[double brackets]] when piped)."""
    lines = []
    if not answer.answerable:
        lines.append("(the corpus most likely does not answer this; the closest passages follow)")
    open_, close = ("\033[1m", "\033[0m") if color else ("[[", "]]")
    for p in answer.passages:
        c = p.citation
        page = "" if c.page_start is None else f" p. {c.page_start}" if c.page_start == c.page_end else f" pp. {c.page_start}-{c.page_end}"
        where = f"{c.document}{page}:{c.line_start}-{c.line_end} [{c.start}:{c.end}]"
        lines.append(f"{p.rank}. {where}  {' > '.join(c.section)}  (score {p.score:.4f})")
        lo, hi = p.highlight.start - c.start, p.highlight.end - c.start
        text = p.text[:lo] + open_ + p.text[lo:hi] + close + p.text[hi:]
        lines.append("   " + text.replace("\n", "\n   "))
    return "\n".join(lines)


def _one_torch_thread_per_search() -> None:
    """When queries run through torch (RAG_QUERY_ENGINE=sentence-transformers), concurrent searches
    use the cores instead of fighting over them: 4 clients went from 36.6 to 44.6 req/s with one torch
    thread (docs/performance.md). numpy's BLAS is left alone: limiting it to one thread cost single
    queries ~6 ms and gained no throughput (bench/perf_query.py, bench/perf_load.py)."""
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from rag.api import check_port, create_app, server
    from rag.reload import Reloader

    settings.check_serving()  # a bad token setting fails before the model loads
    check_port(args.host, args.port)  # a taken port is one line now, not a traceback after "serving"
    retriever = open_retriever(settings)
    _one_torch_thread_per_search()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s rag: %(message)s"))
    logging.getLogger("rag").addHandler(handler)  # index reloads and reindex jobs, one line each
    logging.getLogger("rag").setLevel(logging.INFO)
    reloader = Reloader(retriever, settings.reload_poll_ms / 1000)
    app = create_app(retriever, reloader)
    reloader.start()
    if settings.admin_token:
        admin = "admin endpoints need the bearer token"
    else:
        admin = "admin endpoints open to 127.0.0.1 only" if settings.admin_allow_localhost else "admin endpoints off"
    print(
        f"serving {len(retriever.index.passages)} passages from {retriever.index.path.name} on http://{args.host}:{args.port} "
        f"(API docs: /docs; {admin})",
        file=sys.stderr,
    )
    uvicorn_server = server(app, settings, args.host, args.port)
    threading.Thread(target=_warm_up_when_listening, args=(uvicorn_server, retriever), name="rag-warm-up", daemon=True).start()
    try:
        uvicorn_server.run()
    finally:
        reloader.stop()
    return 0


def _warm_up_when_listening(uvicorn_server: uvicorn.Server, retriever: Retriever) -> None:
    """Load the first search's lazy parts once the server listens (Retriever.warm_up), so neither
    start-up nor the first question pays for them; a search that comes sooner shares jieba's load."""
    for _ in range(1200):  # up to a minute for uvicorn to bind
        if uvicorn_server.started or uvicorn_server.should_exit:
            break
        time.sleep(0.05)
    if uvicorn_server.started:
        with contextlib.suppress(Exception):  # a fault shows in the first real search, as one line, not here
            retriever.warm_up()


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from rag.evaluate import evaluate, evaluate_benchmark, format_table, load_questions

    if args.k < 1:
        raise RagError("-k must be at least 1")
    if (args.file is None) == (args.beir is None):
        raise RagError("give either a questions FILE or --beir DIR")
    if args.negatives is not None and args.beir is None:
        raise RagError("--negatives DIR needs --beir DIR")
    if args.beir is not None:
        from rag.beir import index_in_memory, load_benchmark
        from rag.encoders import load_encoders
        from rag.index import embedding_units_by_role
        from rag.retrieve import Retriever

        bench = load_benchmark(args.beir)  # a bad folder fails before the model loads
        negatives = load_benchmark(args.negatives).queries if args.negatives is not None else None
        encoders = load_encoders(settings, progress=not args.json)
        memory = index_in_memory(bench.passages, encoders, embedding_units_by_role(settings), progress=not args.json, settings=settings)
        retriever = Retriever(settings, encoders, memory)
        report: dict[str, Any] = evaluate_benchmark(
            retriever, bench.queries, bench.qrels, k=args.k, progress=not args.json, negatives=negatives
        )
    else:
        questions = load_questions(args.file)  # a bad file fails before the model loads
        report = evaluate(open_retriever(settings), questions, k=args.k, progress=not args.json)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
