"""A seeded, synthetic Reflexio workload: users, requests with interactions, profiles, user and
agent playbooks, workflow runs.

Everything is a pure function of (size, seed): two processes build the same rows, which is what
lets the tests assert on search results and lets benchmark runs be compared. Rows come out as
plain dicts keyed by the model's column names (the shape the store's bulk add operations take);
embeddings are attached by the caller, from the demo embedder or from `ClusteredVectors`.

Each user has a *persona* (colour theme, language, timezone, editor, cloud) whose facts are
written once per user as "anchor" profiles; the rest are filler facts drawn from other topics
whose vocabulary never repeats an anchor's key words. So "dark mode" for a dark-mode user has
exactly one right answer, which the demo test checks.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "ANCHOR_TOPICS",
    "TOPICS",
    "ClusteredVectors",
    "GeneratedProfile",
    "Persona",
    "Topic",
    "Workload",
    "WorkloadSize",
]

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Topic:
    """A family of facts: `template` filled from `slots`; `query` is what a user would search."""

    name: str
    template: str
    slots: tuple[tuple[str, ...], ...]
    query: str
    extractor: str = "preferences"


# Persona topics: one profile per user each, with the value chosen by the persona.
ANCHOR_TOPICS: tuple[Topic, ...] = (
    Topic("theme", "Prefers {0} in every editor and dashboard", (), "colour scheme", "ui"),
    Topic("language", "Works in {0} most days", (), "programming language", "skills"),
    Topic("timezone", "Timezone {0}, schedules meetings in local time", (), "timezone", "locale"),
    Topic("editor", "Edits code in {0}", (), "code editor", "tools"),
    Topic("cloud", "Deploys services to {0}", (), "cloud deployment", "infrastructure"),
)
THEMES = ("dark mode", "light theme", "high-contrast theme", "solarized colours")
LANGUAGES = ("Rust", "Python", "Go", "TypeScript", "Kotlin", "Elixir", "C++", "Java")
TIMEZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Europe/London",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Asia/Kolkata",
)
EDITORS = ("Neovim", "VS Code", "Emacs", "IntelliJ IDEA", "Helix", "Zed")
CLOUDS = ("AWS", "Google Cloud", "Azure", "Fly.io", "a Hetzner cluster", "on-premises Kubernetes")

_PROJECTS = (
    "billing service",
    "search indexer",
    "mobile app",
    "data pipeline",
    "auth gateway",
    "recommendation engine",
    "internal wiki",
    "checkout flow",
)
_DATABASES = ("PostgreSQL", "SQLite", "Redis", "ClickHouse", "DynamoDB", "MongoDB")
_FOODS = ("peanuts", "gluten", "shellfish", "lactose")
_CITIES = ("Lisbon", "Toronto", "Seoul", "Nairobi", "Prague", "Austin", "Oslo")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_TEAMS = ("platform", "payments", "growth", "security", "data", "mobile")
_FORMATS = ("bullet points", "short paragraphs", "tables", "numbered steps")

# Filler topics: 45, so that with the 5 anchors there are 50 topics (the benchmark's clusters).
# Their wording avoids the anchors' key words ("dark", "mode", "theme", "timezone", ...).
TOPICS: tuple[Topic, ...] = (
    Topic("project", "Currently building the {0}", (_PROJECTS,), "current project", "work"),
    Topic("database", "Stores data for the {0} in {1}", (_PROJECTS, _DATABASES), "database"),
    Topic("allergy", "Allergic to {0}; avoid recipes with it", (_FOODS,), "food allergy"),
    Topic("city", "Lives in {0}", (_CITIES,), "home city", "personal"),
    Topic("standup", "Has standup every {0} morning", (_DAYS,), "standup meeting", "schedule"),
    Topic("team", "Member of the {0} team", (_TEAMS,), "team", "work"),
    Topic("format", "Wants answers formatted as {0}", (_FORMATS,), "answer format", "style"),
    Topic(
        "verbosity",
        "Dislikes long answers; keep replies under {0} sentences",
        (("three", "five", "ten"),),
        "short answers",
        "style",
    ),
    Topic(
        "examples",
        "Asks for runnable code examples with {0} tests",
        (("unit", "integration", "property-based"),),
        "code examples",
        "style",
    ),
    Topic(
        "review",
        "Expects a code review checklist before merging {0}",
        (("pull requests", "hotfixes", "migrations"),),
        "code review",
    ),
    Topic(
        "ci",
        "Runs CI on {0}",
        (("GitHub Actions", "GitLab CI", "Buildkite", "Jenkins"),),
        "continuous integration",
        "tools",
    ),
    Topic(
        "os",
        "Uses {0} as the main operating system",
        (("Arch Linux", "macOS", "Windows 11", "Ubuntu", "NixOS"),),
        "operating system",
        "tools",
    ),
    Topic("shell", "Prefers the {0} shell", (("zsh", "fish", "bash", "nushell"),), "shell"),
    Topic(
        "keyboard",
        "Types on a {0} keyboard layout",
        (("Dvorak", "Colemak", "QWERTZ"),),
        "keyboard layout",
    ),
    Topic(
        "meetings", "Avoids meetings on {0} afternoons", (_DAYS,), "meeting preferences", "schedule"
    ),
    Topic(
        "oncall",
        "On call for the {0} every {1}",
        (_PROJECTS, _DAYS),
        "on-call rotation",
        "schedule",
    ),
    Topic(
        "deadline",
        "Shipping the {0} by the end of the quarter",
        (_PROJECTS,),
        "release deadline",
        "work",
    ),
    Topic("testing", "Writes tests first for the {0}", (_PROJECTS,), "test driven development"),
    Topic(
        "docs",
        "Keeps design documents for the {0} in the wiki",
        (_PROJECTS,),
        "design documents",
        "work",
    ),
    Topic(
        "security", "Rotates API keys for the {0} monthly", (_PROJECTS,), "key rotation", "security"
    ),
    Topic(
        "monitoring",
        "Watches {0} dashboards for the {1}",
        (("Grafana", "Datadog", "Honeycomb"), _PROJECTS),
        "monitoring",
        "tools",
    ),
    Topic(
        "incident",
        "Led the postmortem of a {0} outage",
        (_PROJECTS,),
        "incident postmortem",
        "work",
    ),
    Topic(
        "learning",
        "Learning {0} on weekends",
        (("Haskell", "Zig", "category theory", "Japanese", "piano"),),
        "learning",
        "personal",
    ),
    Topic(
        "coffee",
        "Drinks {0} before noon",
        (("espresso", "green tea", "cold brew"),),
        "coffee",
        "personal",
    ),
    Topic(
        "pet",
        "Has a {0} named {1}",
        (("cat", "dog", "parrot"), ("Miso", "Pixel", "Nova")),
        "pet",
        "personal",
    ),
    Topic("travel", "Travelling to {0} next month", (_CITIES,), "travel plans", "personal"),
    Topic("commute", "Commutes by {0}", (("bike", "train", "bus", "car"),), "commute", "personal"),
    Topic(
        "accessibility",
        "Uses a screen reader for {0}",
        (("long documents", "PDFs", "email"),),
        "screen reader",
        "accessibility",
    ),
    Topic(
        "fontsize",
        "Needs a large font size on {0}",
        (("laptops", "phones", "projectors"),),
        "font size",
        "accessibility",
    ),
    Topic(
        "notifications",
        "Mutes notifications during {0}",
        (("focus time", "evenings", "weekends"),),
        "notifications",
    ),
    Topic("units", "Uses {0} units", (("metric", "imperial"),), "measurement units", "locale"),
    Topic(
        "dateformat",
        "Writes dates as {0}",
        (("YYYY-MM-DD", "DD.MM.YYYY", "MM/DD/YYYY"),),
        "date format",
        "locale",
    ),
    Topic(
        "currency", "Budgets in {0}", (("euros", "dollars", "yen", "rupees"),), "currency", "locale"
    ),
    Topic(
        "spoken",
        "Speaks {0} with the support team",
        (("German", "Spanish", "French"),),
        "spoken language",
        "locale",
    ),
    Topic(
        "budget",
        "Cloud budget for the {0} is capped at {1} a month",
        (_PROJECTS, ("500", "2000", "10000")),
        "cloud budget",
        "work",
    ),
    Topic("hiring", "Interviewing candidates for the {0} team", (_TEAMS,), "hiring", "work"),
    Topic("mentor", "Mentors a junior engineer on the {0} team", (_TEAMS,), "mentoring", "work"),
    Topic("vacation", "On vacation in {0} for two weeks", (_CITIES,), "vacation", "schedule"),
    Topic("api", "Prefers {0} APIs over alternatives", (("REST", "GraphQL", "gRPC"),), "API style"),
    Topic(
        "orm",
        "Uses {0} for database access",
        (("SQLAlchemy", "Prisma", "Diesel", "GORM"),),
        "ORM library",
        "tools",
    ),
    Topic(
        "container",
        "Builds containers with {0}",
        (("Docker", "Podman", "Buildah"),),
        "containers",
        "tools",
    ),
    Topic(
        "linting",
        "Runs {0} on every commit",
        (("ruff", "clippy", "eslint", "golangci-lint"),),
        "linting",
        "tools",
    ),
    Topic(
        "privacy",
        "Asked never to store {0} in logs",
        (("email addresses", "phone numbers", "payment details"),),
        "privacy",
        "security",
    ),
    Topic(
        "escalation",
        "Escalates {0} issues to the {1} team",
        (("billing", "login", "performance"), _TEAMS),
        "escalation",
        "work",
    ),
    Topic(
        "feedback",
        "Gave thumbs down when the agent guessed {0}",
        (("file paths", "version numbers", "API names"),),
        "negative feedback",
    ),
)
assert len(ANCHOR_TOPICS) + len(TOPICS) == 50
ALL_TOPICS: tuple[Topic, ...] = ANCHOR_TOPICS + TOPICS

_TOOLS = ("search_docs", "run_sql", "create_ticket", "schedule_meeting", "read_file", "web_fetch")
_AGENT_VERSIONS = ("agent-1.4.0", "agent-1.5.0", "agent-2.0.0")
_SOURCES = ("web", "slack", "api", "ide-plugin")
_PIPELINES = (
    ("profile_generation", "Profile Generation", 4),
    ("playbook_extraction", "Playbook Extraction", 5),
    ("playbook_aggregation", "Playbook Aggregation", 3),
    ("session_evaluation", "Session Evaluation", 6),
)


@dataclass(frozen=True)
class WorkloadSize:
    """How much to generate. The defaults are the demo's modest data set."""

    users: int = 20
    profiles: int = 2_000
    requests: int = 500
    user_playbooks: int = 200
    agent_playbooks: int = 40
    workflow_runs: int = 200
    seed: int = 20261122

    @classmethod
    def tiny(cls) -> WorkloadSize:
        """A size for fast tests."""
        return cls(
            users=5,
            profiles=200,
            requests=40,
            user_playbooks=30,
            agent_playbooks=10,
            workflow_runs=30,
        )


@dataclass(frozen=True)
class Persona:
    user_id: str
    theme: str
    language: str
    timezone: str
    editor: str
    cloud: str

    def anchor_values(self) -> tuple[str, ...]:
        """In ANCHOR_TOPICS order."""
        return (self.theme, self.language, self.timezone, self.editor, self.cloud)


@dataclass(frozen=True)
class GeneratedProfile:
    """A profile row plus what generated it: its topic (0..49) and slot-value variant."""

    topic: int
    variant: int
    row: dict[str, Any] = field(hash=False)


def _user_id(index: int) -> str:
    return f"user-{index:04d}"


def _stable_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class Workload:
    """The generators. Every call restarts from the seed, so results never depend on call order."""

    def __init__(self, size: WorkloadSize | None = None) -> None:
        self.size = size or WorkloadSize()
        self.users = [_user_id(i) for i in range(self.size.users)]
        # Personas cycle through the values with different strides, so every combination is
        # varied but user-0000 is always the dark-mode, Rust, Europe/Berlin user the docs cite.
        self.personas = {
            user: Persona(
                user_id=user,
                theme=THEMES[i % len(THEMES)],
                language=LANGUAGES[i % len(LANGUAGES)],
                timezone=TIMEZONES[i % len(TIMEZONES)],
                editor=EDITORS[(i * 5) % len(EDITORS)],
                cloud=CLOUDS[(i * 7) % len(CLOUDS)],
            )
            for i, user in enumerate(self.users)
        }

    def _rng(self, stream: str) -> random.Random:
        # One independent stream per entity: adding playbooks must not change the profiles.
        return random.Random(f"{self.size.seed}:{stream}")

    # -- profiles ------------------------------------------------------------------------------

    def profiles(self, count: int | None = None) -> Iterator[GeneratedProfile]:
        """`count` profiles (default: size.profiles), spread evenly over the users.

        The first len(ANCHOR_TOPICS) profiles of each user are its persona facts, always current.
        """
        total = self.size.profiles if count is None else count
        rng = self._rng("profiles")
        users = self.users
        for n in range(total):
            user = users[n % len(users)]
            ordinal = n // len(users)
            persona = self.personas[user]
            if ordinal < len(ANCHOR_TOPICS):
                topic_index = ordinal
                value = persona.anchor_values()[ordinal]
                topic = ANCHOR_TOPICS[ordinal]
                content = topic.template.format(value)
                variant = _anchor_variant(topic_index, value)
                status = "current"
            else:
                filler = rng.randrange(len(TOPICS))
                topic_index = len(ANCHOR_TOPICS) + filler
                topic = TOPICS[filler]
                picks = [rng.randrange(len(values)) for values in topic.slots]
                content = topic.template.format(
                    *(v[p] for v, p in zip(topic.slots, picks, strict=True))
                )
                variant = _variant(picks, topic.slots)
                roll = rng.random()
                status = "current" if roll < 0.9 else ("archived" if roll < 0.96 else "pending")
            row: dict[str, Any] = {
                "profile_id": _stable_uuid(rng),
                "user_id": user,
                "content": content,
                "custom_features": {
                    "topic": topic.name,
                    "confidence": round(rng.uniform(0.5, 1.0), 2),
                },
                "extractor_names": [topic.extractor],
                "source": rng.choice(_SOURCES),
                "status": status,
                "generated_from_request_id": f"req-{user}-{rng.randrange(10_000):05d}",
                "profile_time_to_live": "infinity" if rng.random() < 0.8 else "one_month",
                "expanded_terms": topic.query,
                "tags": [topic.name, topic.extractor],
            }
            yield GeneratedProfile(topic=topic_index, variant=variant, row=row)

    # -- requests and interactions -------------------------------------------------------------

    def requests(self, count: int | None = None) -> Iterator[dict[str, Any]]:
        """Requests, each with 2 to 6 interactions (alternating user/assistant, some tool calls).

        Each row is a request's columns plus "interactions": a list of interaction dicts.
        """
        total = self.size.requests if count is None else count
        rng = self._rng("requests")
        for n in range(total):
            user = self.users[n % len(self.users)]
            persona = self.personas[user]
            session = f"sess-{user}-{n // (len(self.users) * 3):04d}"
            request_id = f"req-{user}-{n:05d}"
            topic = rng.choice(ALL_TOPICS)
            subject = _subject(topic, persona, rng)
            turns = rng.randint(2, 6)
            interactions: list[dict[str, Any]] = []
            for turn in range(turns):
                interaction: dict[str, Any]
                if turn % 2 == 0:
                    interaction = {
                        "role": "user",
                        "content": rng.choice(_USER_LINES).format(subject=subject),
                        "tools_used": [],
                    }
                    if rng.random() < 0.15:
                        interaction["user_action"] = rng.choice(("click", "scroll", "copy"))
                        interaction["user_action_description"] = (
                            f"{interaction['user_action']} on answer"
                        )
                else:
                    tools: list[dict[str, Any]] = []
                    if rng.random() < 0.4:
                        tool = rng.choice(_TOOLS)
                        tools.append({"tool_name": tool, "tool_data": {"query": subject}})
                    interaction = {
                        "role": "assistant",
                        "content": rng.choice(_ASSISTANT_LINES).format(subject=subject),
                        "tools_used": tools,
                    }
                interactions.append(interaction)
            yield {
                "request_id": request_id,
                "user_id": user,
                "session_id": session,
                "agent_version": rng.choice(_AGENT_VERSIONS),
                "source": rng.choice(_SOURCES),
                "interactions": interactions,
            }

    # -- playbooks -----------------------------------------------------------------------------

    def user_playbooks(self, count: int | None = None) -> Iterator[dict[str, Any]]:
        total = self.size.user_playbooks if count is None else count
        rng = self._rng("user_playbooks")
        for n in range(total):
            user = self.users[n % len(self.users)]
            persona = self.personas[user]
            # Each user cycles through all four kinds whatever the number of users.
            kind = (n // len(self.users)) % 4
            name, trigger, content, rationale = _playbook_text(kind, persona, rng)
            yield {
                "user_id": user,
                "playbook_name": name,
                "request_id": f"req-{user}-{rng.randrange(10_000):05d}",
                "agent_version": rng.choice(_AGENT_VERSIONS),
                "content": content,
                "trigger": trigger,
                "rationale": rationale,
                "blocking_issue": None if rng.random() < 0.7 else {"kind": "missing_context"},
                "source_interaction_ids": [],
                "status": "current",
                "source": "correction",
            }

    def agent_playbooks(self, count: int | None = None) -> Iterator[dict[str, Any]]:
        total = self.size.agent_playbooks if count is None else count
        rng = self._rng("agent_playbooks")
        for n in range(total):
            name, trigger, content, rationale = _AGENT_LESSONS[n % len(_AGENT_LESSONS)]
            roll = rng.random()
            yield {
                "playbook_name": name,
                "agent_version": _AGENT_VERSIONS[n % len(_AGENT_VERSIONS)],
                "content": content,
                "trigger": trigger,
                "rationale": rationale,
                "playbook_status": "approved"
                if roll < 0.6
                else ("pending" if roll < 0.9 else "rejected"),
                "playbook_metadata": {
                    "aggregated_from": rng.randint(2, 40),
                    "reviewer": rng.choice(("ana", "bo", "chen")),
                },
                "status": "current",
                "source": "aggregation",
            }

    # -- workflow runs -------------------------------------------------------------------------

    def workflow_runs(self, count: int | None = None) -> Iterator[dict[str, Any]]:
        """(run_id, state) as the workflow backend's save_state takes them: a state dict."""
        total = self.size.workflow_runs if count is None else count
        rng = self._rng("workflow_runs")
        for n in range(total):
            pipeline_id, pipeline_name, steps = _PIPELINES[n % len(_PIPELINES)]
            status = rng.choices(("completed", "running", "failed", "paused"), (6, 2, 1, 1))[0]
            step = steps if status == "completed" else rng.randrange(steps)
            user = self.users[n % len(self.users)]
            yield {
                "run_id": f"run-{n:06d}",
                "pipeline_id": pipeline_id,
                "pipeline_name": pipeline_name,
                "pipeline_version": rng.choice(("1.0.0", "1.1.0")),
                "status": status,
                "current_step_index": step,
                "total_steps": steps,
                "pipeline_context": {
                    "user_id": user,
                    "request_ids": [f"req-{user}-{n:05d}"],
                    "step_outputs": {},
                },
                "metadata": {
                    "batch_id": f"batch-{n // 50:03d}",
                    "org": "acme",
                    "tags": ["nightly"] + (["backfill"] if n % 3 == 0 else []),
                    "triggered_by": rng.choice(("schedule", "publish", "manual")),
                },
            }


def _variant(picks: Sequence[int], slots: Sequence[Sequence[str]]) -> int:
    variant = 0
    for pick, values in zip(picks, slots, strict=True):
        variant = variant * len(values) + pick
    return variant


def _anchor_variant(topic_index: int, value: str) -> int:
    pools = (THEMES, LANGUAGES, TIMEZONES, EDITORS, CLOUDS)
    return pools[topic_index].index(value)


def _subject(topic: Topic, persona: Persona, rng: random.Random) -> str:
    if topic in ANCHOR_TOPICS:
        return f"{topic.query} ({persona.anchor_values()[ANCHOR_TOPICS.index(topic)]})"
    values = [rng.choice(v) for v in topic.slots]
    return topic.template.format(*values).lower()


_USER_LINES = (
    "Can you help me with {subject}?",
    "I need to sort out {subject} before Friday.",
    "What is the best practice for {subject}?",
    "That answer about {subject} was wrong, please check again.",
    "Remember this: {subject}.",
)
_ASSISTANT_LINES = (
    "Here is a step-by-step plan for {subject}.",
    "I looked up the documentation on {subject} and summarised it below.",
    "Sorry about that. I corrected the answer on {subject}.",
    "Noted. I will keep {subject} in mind for future requests.",
)
_AGENT_LESSONS = (
    (
        "scheduling",
        "user asks to book a meeting",
        "Always confirm the user's timezone before proposing meeting times",
        "Several users were offered slots in the wrong timezone",
    ),
    (
        "code_style",
        "user asks for code",
        "Answer in the user's main programming language and include a runnable example",
        "Users corrected answers written in a language they do not use",
    ),
    (
        "formatting",
        "user asks a long question",
        "Keep answers short and use bullet points unless asked for detail",
        "Users gave thumbs down on long answers",
    ),
    (
        "deployment",
        "user reports a failed deployment",
        "Ask for the deployment logs and the cloud provider before suggesting fixes",
        "Guesses about the platform wasted turns",
    ),
    (
        "ui",
        "user asks about the interface",
        "Describe settings in the colour scheme the user has chosen, such as dark mode",
        "Screenshots in the wrong colour scheme confused users",
    ),
    (
        "privacy",
        "user pastes credentials",
        "Never echo API keys or passwords back; tell the user to rotate them",
        "Leaked secrets in transcripts",
    ),
    (
        "escalation",
        "user is blocked for more than three turns",
        "Offer to create a support ticket after three failed attempts",
        "Long unresolved sessions lowered satisfaction",
    ),
    (
        "tools",
        "user asks about internal documentation",
        "Search the docs tool before answering from memory",
        "Answers from memory cited outdated pages",
    ),
)


def _playbook_text(kind: int, persona: Persona, rng: random.Random) -> tuple[str, str, str, str]:
    if kind == 0:
        return (
            "code_style",
            "user asks for a code example",
            f"Write examples in {persona.language}, not in other languages",
            f"The user corrected an answer that was not in {persona.language}",
        )
    if kind == 1:
        return (
            "scheduling",
            "user asks to schedule a meeting",
            f"Propose meeting times in {persona.timezone}",
            "The user had to convert times by hand",
        )
    if kind == 2:
        return (
            "ui",
            "user asks about settings or screenshots",
            f"Show screenshots and settings with {persona.theme}",
            "The user asked twice for the same colour scheme",
        )
    topic = rng.choice(TOPICS)
    subject = topic.template.format(*(rng.choice(v) for v in topic.slots)).lower()
    return (
        "context",
        f"user mentions {topic.query}",
        f"Remember that the user {subject[0].lower() + subject[1:]}",
        "The user repeated this fact in several sessions",
    )


class ClusteredVectors:
    """Realistic synthetic embeddings for benchmarks: topic centroid + variant offset + noise.

    Real embeddings cluster by subject, with finer structure inside each cluster; isotropic
    random vectors would make every neighbour equally far and approximate search meaningless.
    A vector for (topic t, variant v) is normalise(C[t] + a * S[t, v] + b * noise): rows about
    the same subject are close (cosine ~0.6-0.8), rows of other topics near-orthogonal.
    """

    def __init__(
        self,
        dimensions: int = 512,
        topics: int = 50,
        variants: int = 16,
        seed: int = 7,
        variant_weight: float = 0.55,
        noise: float = 0.45,
    ) -> None:
        gen = np.random.default_rng(seed)
        self.dimensions = dimensions
        self.variants = variants
        self.variant_weight = variant_weight
        self.noise = noise
        self.centroids = _normalise(gen.standard_normal((topics, dimensions)).astype(np.float32))
        self.offsets = _normalise(
            gen.standard_normal((topics, variants, dimensions)).astype(np.float32)
        )
        self._seed = seed

    def vectors(
        self,
        topics: Sequence[int] | npt.NDArray[np.int64],
        variants: Sequence[int] | npt.NDArray[np.int64],
        *,
        stream: int = 0,
    ) -> FloatArray:
        """One unit vector per (topic, variant); `stream` seeds the noise (0: rows, 1: queries)."""
        t = np.asarray(topics, dtype=np.int64)
        v = np.asarray(variants, dtype=np.int64) % self.variants
        gen = np.random.default_rng((self._seed, stream))
        noise = _normalise(gen.standard_normal((len(t), self.dimensions)).astype(np.float32))
        out = self.centroids[t] + self.variant_weight * self.offsets[t, v] + self.noise * noise
        return _normalise(out.astype(np.float32))


def _normalise(matrix: FloatArray) -> FloatArray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    out: FloatArray = (matrix / norms).astype(np.float32)
    return out
