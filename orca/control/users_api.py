"""Users of a shared control plane over HTTP (``orca users ...``, ``orca token rotate``).

    GET    /api/me                        -> Me (any user: name, role, quotas in force, usage)
    POST   /api/token/rotate              -> NewToken (any user: a new token for yourself; the old one dies now)
    GET    /api/users                     -> UserList                 (admin)
    POST   /api/users        UserCreate   -> NewToken (201)           (admin; the token is shown only here)
    DELETE /api/users/{name}              -> UserOut                  (admin; the user's tokens die now; the
                                                                        name stays retired with its jobs)
    POST   /api/users/{name}/rotate       -> NewToken                 (admin)
    PATCH  /api/users/{name}/quota  QuotaUpdate -> UserOut            (admin; null clears an override)

Tokens are stored as SHA-256 hashes only (``orca.queue.users``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from orca.control import quotas
from orca.control.auth import Principal, get_service, require_admin, require_principal
from orca.control.service import OrcaService
from orca.errors import JobStateError
from orca.queue.users import UserRecord

router = APIRouter(prefix="/api", tags=["users"])

Admin = Annotated[str, Depends(require_admin)]
Service = Annotated[OrcaService, Depends(get_service)]


class QuotaValues(BaseModel):
    max_active_jobs: float = Field(description="Unfinished jobs at once (0 = unlimited).")
    max_queued_requests: float = Field(description="Requests across unfinished jobs (0 = unlimited).")
    max_usd_per_day: float = Field(description="Dollars spent over the last 24 hours (0 = unlimited).")


class UserOut(BaseModel):
    name: str
    admin: bool
    created_at: float
    quota_overrides: dict[str, float] = Field(default_factory=dict)


class UserList(BaseModel):
    object: str = "list"
    data: list[UserOut]


class UserCreate(BaseModel):
    name: str = Field(description="1-64 letters, digits, '.', '_' or '-'.")
    admin: bool = False
    reclaim_jobs: bool = Field(False, description="Required to reuse a revoked user's name: its old jobs and files go to the new user.")


class NewToken(BaseModel):
    user: UserOut
    token: str = Field(description="The bearer token; shown once, stored only as a hash.")


class QuotaUpdate(BaseModel):
    max_active_jobs: float | None = Field(None, ge=0)
    max_queued_requests: float | None = Field(None, ge=0)
    max_usd_per_day: float | None = Field(None, ge=0)


class Usage(BaseModel):
    active_jobs: int
    queued_requests: int
    usd_last_day: float


class Me(BaseModel):
    name: str
    admin: bool
    quotas: QuotaValues
    usage: Usage


def _out(record: UserRecord) -> UserOut:
    return UserOut(name=record.name, admin=record.admin, created_at=record.created_at, quota_overrides=record.quotas)


@router.get("/me", response_model=Me)
def me(principal: Annotated[Principal, Depends(require_principal)], svc: Service) -> Me:
    record = svc.registry.users.get(principal.name)
    limits = quotas.limits_for(svc.settings.quota, record.quotas if record else None)
    usage = quotas.usage_of(svc.registry, principal.name)
    return Me(name=principal.name, admin=principal.admin, quotas=QuotaValues(**limits.__dict__), usage=Usage(**usage.__dict__))


@router.post("/token/rotate", response_model=NewToken)
def rotate_own(principal: Annotated[Principal, Depends(require_principal)], svc: Service) -> NewToken:
    users = svc.registry.users
    if users.get(principal.name) is None:  # a token made before users had records: give it one
        users.adopt(principal.name, None, admin=False)
    token = users.rotate(principal.name)
    return NewToken(user=_out(users.require(principal.name)), token=token)


@router.get("/users", response_model=UserList)
def list_users(_: Admin, svc: Service) -> UserList:
    return UserList(data=[_out(u) for u in svc.registry.users.list()])


@router.post("/users", response_model=NewToken, status_code=201)
def add_user(body: UserCreate, _: Admin, svc: Service) -> NewToken:
    users = svc.registry.users
    token = users.add(body.name, admin=body.admin, reclaim_jobs=body.reclaim_jobs)
    return NewToken(user=_out(users.require(body.name)), token=token)


@router.delete("/users/{name}", response_model=UserOut)
def revoke_user(name: str, _: Admin, svc: Service) -> UserOut:
    users = svc.registry.users
    record = users.get(name)
    if record is not None and record.admin and sum(u.admin for u in users.list()) == 1:
        raise JobStateError(f"{name} is the last admin; make another admin first (`orca users add NAME --admin`)")
    return _out(users.revoke(name))


@router.post("/users/{name}/rotate", response_model=NewToken)
def rotate_user(name: str, _: Admin, svc: Service) -> NewToken:
    users = svc.registry.users
    token = users.rotate(name)
    return NewToken(user=_out(users.require(name)), token=token)


@router.patch("/users/{name}/quota", response_model=UserOut)
def set_quota(name: str, body: QuotaUpdate, _: Admin, svc: Service) -> UserOut:
    return _out(svc.registry.users.set_quotas(name, {k: getattr(body, k) for k in body.model_fields_set}))
