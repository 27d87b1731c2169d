"""Simplified Chinese for the messages the service layer raises.

Services speak English sentences with names in them (the CLI and the API use them as they are). The web
pages show them in the user's language: each pattern below matches one sentence form and rebuilds it
in Chinese with the same names. A message without a pattern is shown as it is.
"""

from __future__ import annotations

import re

from workflows.bilingual import name_in

_PATTERNS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), zh) for p, zh in [
    (r"^'(?P<task>.+)' was already completed by (?P<user>\S+) \((?P<when>[^)]*?)(?: UTC)?\)$",
     "「{task}」已由 {user} 完成（{when} UTC）"),
    (r"^'(?P<task>.+)' is no longer open \(it was (?P<status>\w+)\)$", "「{task}」已不再待办（状态：{status}）"),
    (r"^'(?P<task>.+)' is claimed by (?P<user>\S+)$", "「{task}」已被 {user} 认领"),
    (r"^'(?P<task>.+)' is not claimed by (?P<user>\S+)$", "「{task}」不在 {user} 名下"),
    (r"^task #(?P<id>\d+) is not claimed by (?P<user>\S+)$", "任务 #{id} 不在 {user} 名下"),
    (r"^'(?P<task>.+)' is work for the role '(?P<role>[^']+)', which (?P<user>\S+) does not have$",
     "「{task}」属于角色「{role}」，{user} 没有该角色"),
    (r"^this contract changed since you opened '(?P<task>.+)' \(version (?P<a>\d+), now (?P<b>\d+)\); "
     r"check it and submit again$",
     "打开「{task}」后，合同已被他人推进；请核对后再次提交"),
    (r"^'(?P<task>.+)' was completed by someone else a moment ago$", "「{task}」刚刚已被他人完成"),
    (r"^'(?P<task>.+)' is not ready any more; reload the contract$", "「{task}」已不可办理，请刷新合同"),
    (r"^someone else changed this contract at the same moment; reload and try again$",
     "他人同时修改了该合同，请刷新后重试"),
    (r"^four eyes: (?P<user>\S+) completed '(?P<done>.+)' on this contract, so someone else must do '(?P<task>.+)'$",
     "四眼原则：{user} 已在本合同中完成「{done}」，「{task}」须由他人办理"),
    (r"^only the holder of '(?P<task>.+)' or a supervisor of its team may reassign it$",
     "只有「{task}」的办理人或本团队主管可以转办"),
    (r"^'(?P<task>.+)' is work of the team '(?P<team>[^']*)', which (?P<user>\S+) is not in$",
     "「{task}」属于团队「{team}」的工作，{user} 不在该团队"),
    (r"^(?P<user>\S+) is not in the team '(?P<team>[^']*)'$", "{user} 不在团队「{team}」"),
    (r"^wrong team$", "团队不符"),
    (r"^the contract amount (?P<amount>\S+) is larger than Lvyue can store \(below (?P<max>[\d,]+)\); "
     r"check the quantities and prices$", "合同金额 {amount} 超出系统可存储的上限（须小于 {max}），请核对数量和单价"),
    (r"^only the starter of (?P<key>\S+) or a supervisor of its team may send a reminder about '(?P<task>.+)'$",
     "只有 {key} 的发起人或本团队主管可以催办「{task}」"),
    (r"^'(?P<task>.+)' is yours to do; there is nobody to remind$", "「{task}」由您本人办理，无需催办"),
    (r"^a reminder about '(?P<task>.+)' was sent at (?P<last>[\d: -]+); the next one is possible from "
     r"(?P<next>[\d: -]+)$", "「{task}」已于 {last} 催办过，下次可催办时间：{next}"),
    (r"^nobody can be reminded about '(?P<task>.+)'$", "「{task}」目前没有可催办的人"),
    (r"^the message is too long$", "留言过长"),
    (r"^at most (?P<n>\d+) characters$", "最多 {n} 个字"),
    (r"^a reason is required$", "请填写原因"),
    (r"^only an administrator may override the four-eyes rule$", "只有管理员可以越过四眼原则"),
    (r"^an override needs a reason$", "越权办理须填写原因"),
    (r"^(?P<day>\S+) is out of range$", "日期 {day} 超出范围"),
    (r"^give a date between 1900 and 2999$", "请填写 1900 至 2999 年之间的日期"),
    (r"^the date range is reversed$", "日期范围前后颠倒"),
    (r"^must not be before the start date$", "不能早于开始日期"),
    (r"^'(?P<raw>.*)' is not a date$", "「{raw}」不是日期"),
    (r"^must be a date such as 2026-11-29$", "请填写日期，例如 2026-11-29"),
    (r"^a period is needed$", "请指定期间"),
    (r"^give both dates of the period$", "请填写期间的起止日期"),
    (r"^(?P<who>\S+) is not in the compliance role$", "{who} 不是合规审计角色"),
    (r"^give the reason for the override \(at least (?P<n>\d+) characters\); it is flagged in the four-eyes "
     r"report$", "请填写越权办理的原因（至少 {n} 个字）；该操作会在四眼报告中标出"),
    (r"^no such user$", "没有该用户"),
    (r"^wrong role$", "角色不符"),
    (r"^no active user '(?P<user>[^']*)'$", "没有启用的用户「{user}」"),
    (r"^(?P<user>\S+) does not have the role '(?P<role>[^']+)'$", "{user} 没有角色「{role}」"),
    (r"^the form '(?P<task>.+)' has errors$", "表单「{task}」有错误"),
    (r"^the start form has errors$", "发起表单有错误"),
    (r"^starting '(?P<process>.+)' needs one of the roles: (?P<roles>.+)$",
     "发起「{process}」需要以下角色之一：{roles}"),
    (r"^unknown queue '(?P<v>[^']*)'$", "未知的任务列表「{v}」"),
    (r"^task #(?P<id>\d+) belongs to the role '(?P<role>[^']+)'$", "任务 #{id} 属于角色「{role}」"),
    (r"^(?P<user>\S+) has no part in (?P<key>\S+)$", "{user} 与 {key} 无关"),
    (r"^no contract '(?P<key>[^']*)'$", "没有合同「{key}」"),
    (r"^no instance '(?P<key>[^']*)'$", "没有流程实例「{key}」"),
    (r"^no task #(?P<id>\d+)$", "没有任务 #{id}"),
    (r"^the team queue is for supervisors, managers and the director$", "团队视图仅供销售主管、经理和总监使用"),
    (r"^no contract with the key '(?P<key>[^']*)'$", "没有编号为「{key}」的合同"),
    (r"^'(?P<key>[^']*)' is not an amount$", "「{key}」不是有效金额"),
    (r"^unknown due filter '(?P<v>[^']*)'$", "未知的到期筛选「{v}」"),
    (r"^unknown sort '(?P<v>[^']*)'$", "未知的排序方式「{v}」"),
    (r"^must be overdue, today, week or none$", "须为：已逾期、今天、本周或无"),
    (r"^choose at least one task to approve$", "请至少选择一个要批准的任务"),
    (r"^choose at least one task$", "请至少选择一个任务"),
    (r"^a batch approves at most (?P<n>\d+) tasks \((?P<m>\d+) chosen\)$", "批量审批最多 {n} 个任务（已选 {m} 个）"),
    (r"^at most (?P<n>\d+) tasks$", "最多 {n} 个任务"),
    (r"^'(?P<task>.+)' is not an approval a batch can give$", "「{task}」不是可批量通过的审批任务"),
    (r"^'(?P<task>.+)' is not of the same kind as the other tasks$", "「{task}」与其他所选任务不是同一类审批"),
    (r"^the comment is too long$", "审批意见过长"),
]]


def localize_message(message: str, lang: str) -> str:
    if lang != "zh-CN" or not message:
        return message
    for pattern, template in _PATTERNS:
        found = pattern.match(message)
        if found:
            values = {k: name_in(v, lang) if k in ("task", "done", "process") else v
                      for k, v in found.groupdict().items()}
            return template.format(**values)
    return message
