"""Reads of accounts."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections

from accounts.models import User

_statements: dict[str, tuple[str, Any, list[str]]] = {}
_statements_lock = threading.Lock()


def _user_statement(using: str) -> tuple[str, Any, list[str]]:
    """SQL, converters and field names of `User.objects.filter(pk=...)`, compiled once per database.

    Every API request loads its user by primary key; building and compiling that query through the
    ORM costs more CPU than running it. The statement, the backend's value converters and the model's
    own from_db() are the ORM's, so the instance is the one .get() would return.
    """
    statement = _statements.get(using)
    if statement is None:
        compiler = User.objects.filter(pk=0).query.get_compiler(using)
        sql, params = compiler.as_sql()
        # One parameter, the primary key: anything else means the query is not what this assumes.
        assert list(params) == [0], params
        columns = [column for column, _, _ in compiler.select]
        converters = compiler.get_converters(columns)
        names = [column.target.attname for column in columns]
        statement = (sql, converters, names)
        with _statements_lock:
            _statements[using] = statement
    return statement


def user_get_by_id(user_id: int, *, using: str = "default") -> User | None:
    sql, converters, names = _user_statement(using)
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    # What SQLCompiler.apply_converters does for each row (e.g. MySQL's 0/1 -> bool, naive -> aware).
    for position, (functions, expression) in converters.items():
        value = values[position]
        for function in functions:
            value = function(value, expression, connections[using])
        values[position] = value
    return User.from_db(using, names, values)
